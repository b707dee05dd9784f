"""The ``screenshot`` handler against a real X server (Xvfb): PNG, size cap, clear errors.

The handler reads DISPLAY from the environment, as the agent does under a desktop session.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from collections.abc import Iterator

import msgspec
import pytest

from arete.commands import ScreenshotArgs, ScreenshotResult
from edge_agent.errors import CommandFailed
from edge_agent.handlers.screenshot import take_screenshot
from edge_agent.settings import ScreenshotSettings
from tests.fixtures.display import XvfbServer

SMALLEST_CAP = 16 * 1024  # the lowest max_bytes the contract accepts


def screenshot(settings: ScreenshotSettings | None = None, **args: int) -> ScreenshotResult:
    return asyncio.run(take_screenshot(ScreenshotArgs(**args), settings or ScreenshotSettings()))


def refused(settings: ScreenshotSettings | None = None, **args: int) -> CommandFailed:
    with pytest.raises(CommandFailed) as failure:
        screenshot(settings, **args)
    return failure.value


def decode_png(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit truecolour PNG (enough to check ours)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        chunk = png[pos + 4 : pos + 8 + length]  # type and body, which the CRC covers
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(chunk) == crc
        if chunk[:4] == b"IHDR":
            header = chunk[4:]
        elif chunk[:4] == b"IDAT":
            idat += chunk[4:]
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (8, 2), "8-bit RGB"
    size = width * 3
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + size)
    rows: list[bytes] = []
    previous = bytes(size)
    for y in range(height):
        start = y * (1 + size)
        line = bytearray(raw[start + 1 : start + 1 + size])
        if raw[start] != 0:
            _unfilter(raw[start], line, previous)
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, rows


def _unfilter(kind: int, line: bytearray, previous: bytes) -> None:
    for x in range(len(line)):
        left = line[x - 3] if x >= 3 else 0
        up, up_left = previous[x], (previous[x - 3] if x >= 3 else 0)
        if kind == 1:
            predicted = left
        elif kind == 2:
            predicted = up
        elif kind == 3:
            predicted = (left + up) // 2
        else:  # Paeth
            guess = left + up - up_left
            predicted = min(
                (left, up, up_left), key=lambda value: abs(guess - value)
            )  # ties go to the earlier one, as the PNG spec says
        line[x] = (line[x] + predicted) & 0xFF


@pytest.fixture
def screen(xvfb_server: XvfbServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[XvfbServer]:
    """The Xvfb screen as this process's display, black again after the test."""
    monkeypatch.setenv("DISPLAY", xvfb_server.display)
    xvfb_server.clear()
    yield xvfb_server
    xvfb_server.clear()


def test_screenshot_is_a_png_of_the_whole_screen(screen: XvfbServer) -> None:
    for monitor in (1, 0):  # the one monitor, and "all monitors"
        result = screenshot(monitor=monitor)
        png = base64.b64decode(result.png_b64)
        assert result.bytes == len(png)
        width, height, _ = decode_png(png)
        assert (width, height) == (screen.width, screen.height)
        assert (result.width, result.height) == (screen.width, screen.height)
        assert (result.source_width, result.source_height) == (screen.width, screen.height)
        assert result.monitor == monitor


def test_screenshot_shows_what_is_on_the_screen(screen: XvfbServer) -> None:
    # Row 10 painted a known colour (BGRx in memory): the PNG must show it as RGB.
    screen.paint_rows(10, bytes([0x30, 0x20, 0x10, 0]) * screen.width)
    _, _, rows = decode_png(base64.b64decode(screenshot(monitor=1).png_b64))
    assert rows[10][:6] == bytes([0x10, 0x20, 0x30]) * 2
    assert rows[9][:3] == b"\0\0\0"


def test_a_screen_of_one_colour_is_flagged_blank_and_a_drawn_one_is_not(
    screen: XvfbServer,
) -> None:
    empty = screenshot(monitor=1)
    assert empty.blank, "an empty (all black) screen is flagged"
    assert '"blank":true' in msgspec.json.encode(empty).decode()
    # One pixel of another colour, in the last row, is enough to count as drawn.
    screen.paint_rows(screen.height - 1, bytes(4 * (screen.width - 1)) + bytes([9, 9, 9, 0]))
    drawn = screenshot(monitor=1)
    assert not drawn.blank
    assert "blank" not in msgspec.json.encode(drawn).decode(), "left out while false"


def test_screenshot_over_the_cap_is_downscaled_and_still_decodes(screen: XvfbServer) -> None:
    # Noise does not compress: 64 noisy rows make a PNG far over the smallest cap.
    noise = os.urandom(screen.width * 64 * 4)
    screen.paint_rows(0, noise)
    result = screenshot(monitor=1, max_bytes=SMALLEST_CAP)
    png = base64.b64decode(result.png_b64)
    assert len(png) == result.bytes <= SMALLEST_CAP
    assert (result.source_width, result.source_height) == (screen.width, screen.height)
    assert result.width < screen.width
    width, height, rows = decode_png(png)
    assert (width, height) == (result.width, result.height)
    # Every n-th pixel of every n-th row: the picture is the screen, smaller.
    stride = next(n for n in range(2, 64) if len(range(0, screen.width, n)) == width)
    assert len(range(0, screen.height, stride)) == height
    for y, x in [(0, 0), (1, 1), (3, width - 1)]:
        source = (y * stride * screen.width + x * stride) * 4
        blue, green, red = noise[source : source + 3]
        assert rows[y][x * 3 : x * 3 + 3] == bytes([red, green, blue])


def test_the_agents_own_cap_wins_over_a_larger_request(screen: XvfbServer) -> None:
    screen.paint_rows(0, os.urandom(screen.width * 64 * 4))
    result = screenshot(ScreenshotSettings(max_bytes=SMALLEST_CAP), monitor=1)
    assert result.bytes <= SMALLEST_CAP
    assert result.width < screen.width


def test_screenshot_that_cannot_fit_says_so(screen: XvfbServer) -> None:
    screen.paint_rows(0, os.urandom(screen.width * screen.height * 4))
    failure = refused(monitor=1, max_bytes=SMALLEST_CAP)
    assert failure.code == "too_large"
    assert f"the limit is {SMALLEST_CAP} bytes" in failure.message


def test_missing_monitor_is_bad_args(screen: XvfbServer) -> None:
    failure = refused(monitor=5)
    assert failure.code == "bad_args"
    assert failure.message.startswith("monitor 5 does not exist; this machine has 1")


def test_no_display_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    failure = refused()
    assert failure.code == "no_display"
    assert failure.message.startswith("no graphical display available")
    assert "without a desktop session" in failure.message


def test_display_without_a_server_is_no_display(
    xvfb_server: XvfbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = int(xvfb_server.display[1:]) + 1
    while os.path.exists(f"/tmp/.X11-unix/X{number}") or os.path.exists(f"/tmp/.X{number}-lock"):
        number += 1
    monkeypatch.setenv("DISPLAY", f":{number}")
    failure = refused()
    assert failure.code == "no_display"
    assert "without a desktop session" in failure.message


def test_disabled_screenshots_are_refused(screen: XvfbServer) -> None:
    failure = refused(ScreenshotSettings(enabled=False))
    assert failure.code == "not_allowed"
