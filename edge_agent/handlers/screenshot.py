"""The ``screenshot`` command: grab a monitor with mss and send it as a size-capped PNG.

A service without a desktop session (a headless Linux box, a Windows service in
session 0) has no screen to capture: that is reported as ``no_display`` with a sentence
that says why, never as a black image. A screen that is captured but a single colour
(nothing drawn, blanked, locked, or not this session's) is sent with ``blank`` set. mss
is imported on first use, so an agent that never takes a screenshot does not pay for it
in memory.

The capture runs in a child process (``python -m edge_agent.handlers.screenshot``), not
in a thread: an X server that accepts the connection and never answers blocks Xlib
forever, and a thread cannot be stopped, while a process can. Past
:data:`CAPTURE_TIMEOUT_S` the child is killed and the command fails with ``timeout``;
nothing of it stays behind in the agent. The child also keeps mss and the raw pixels
out of the agent's memory.

A PNG over the size cap is downscaled by keeping every n-th pixel of every n-th row
(n = 2, 3, ...) until it fits. That needs no image library: the pixels are 32-bit BGRA
words, picked with strided ``memoryview`` slices and reordered to RGB with strided
``bytearray`` slice assignment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import signal
import subprocess
import sys
from typing import Any, Final, cast

import msgspec

from arete.commands import DEFAULT_TIMEOUT_S, CommandName, ScreenshotArgs, ScreenshotResult
from edge_agent.errors import CommandFailed
from edge_agent.settings import ScreenshotSettings

# The child is killed past this, well before the agent's backstop for the command.
CAPTURE_TIMEOUT_S: Final = DEFAULT_TIMEOUT_S[CommandName.SCREENSHOT] - 4.0
MIN_SIDE_PX: Final = 128  # never downscale a screen's shorter side below this
BLANK_BLOCK_BYTES: Final = 1 << 20  # a multiple of 4: one BGRA pixel is 4 bytes
NO_DESKTOP: Final = (
    "a service without a desktop session — a headless box, Windows session 0 — "
    "cannot capture the screen"
)


async def take_screenshot(args: ScreenshotArgs, settings: ScreenshotSettings) -> ScreenshotResult:
    """Capture monitor ``args.monitor`` (0 = all of them) as a PNG within the size cap."""
    if not settings.enabled:
        raise CommandFailed("not_allowed", "screenshots are disabled on this agent")
    cap = min(args.max_bytes, settings.max_bytes)
    missing = _missing_display()
    if missing is not None:
        raise _no_display(missing)
    return await capture_in_child(args.monitor, cap)


class _ChildAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the capture process writes to its stdout: a result, or a failure's reason."""

    result: ScreenshotResult | None = None
    code: str = ""
    message: str = ""


async def capture_in_child(
    monitor: int, cap: int, timeout_s: float = CAPTURE_TIMEOUT_S
) -> ScreenshotResult:
    """Capture in a child process; kill it past ``timeout_s`` or when cancelled."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        str(monitor),
        str(cap),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await child.communicate()
    except TimeoutError:
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "?"
        raise CommandFailed(
            "timeout",
            f"the display {display} did not answer within {timeout_s:g} s; "
            "the capture was stopped (is the X server hung?)",
        ) from None
    finally:
        if child.returncode is None:  # timed out or cancelled: never leave it behind
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 2.0)
    try:
        answer = msgspec.json.decode(out, type=_ChildAnswer)
    except msgspec.DecodeError:
        detail = err.decode("utf-8", "replace").strip()[-500:] or f"exit status {child.returncode}"
        raise CommandFailed("internal", f"the capture process failed: {detail}") from None
    if answer.result is None:
        raise CommandFailed(answer.code or "internal", answer.message or "capture failed")
    return answer.result


def _child_main(argv: list[str]) -> int:
    if hasattr(signal, "alarm"):  # even if the agent is gone (kill -9), never hang on
        signal.alarm(int(CAPTURE_TIMEOUT_S) + 5)
    monitor, cap = int(argv[1]), int(argv[2])
    try:
        answer = _ChildAnswer(result=_capture(monitor, cap))
    except CommandFailed as exc:
        answer = _ChildAnswer(code=exc.code, message=exc.message)
    sys.stdout.buffer.write(msgspec.json.encode(answer))
    sys.stdout.buffer.flush()
    return 0


def _capture(monitor: int, cap: int) -> ScreenshotResult:
    missing = _missing_display()
    if missing is not None:
        raise _no_display(missing)
    import mss
    from mss.exception import ScreenShotError

    open_screen = getattr(mss, "MSS", None) or mss.mss  # ``mss.MSS`` since mss 10.2
    try:
        with open_screen() as screen:
            monitors: list[dict[str, Any]] = screen.monitors
            if monitor >= len(monitors):
                count = len(monitors) - 1
                raise CommandFailed(
                    "bad_args",
                    f"monitor {monitor} does not exist; this machine has {count} "
                    f"(1..{count}, or 0 for all of them)",
                )
            shot = screen.grab(monitors[monitor])
    except (ScreenShotError, OSError) as exc:
        raise _no_display(str(exc)) from None

    width, height = shot.size
    blank = is_blank(shot.raw)
    png = to_png(shot.rgb, width, height)
    sent_width, sent_height = width, height
    if len(png) > cap:
        png, sent_width, sent_height = fit_png(shot.raw, width, height, cap, full_size=len(png))
    return ScreenshotResult(
        monitor=monitor,
        width=sent_width,
        height=sent_height,
        source_width=width,
        source_height=height,
        bytes=len(png),
        png_b64=base64.b64encode(png).decode("ascii"),
        blank=blank,
    )


def is_blank(bgra: bytes | bytearray) -> bool:
    """Whether every pixel has the colour of the first one (a blank or unseen screen).

    Compared a block at a time so that a large screen costs no full-size copy.
    """
    data = memoryview(bgra)
    if len(data) < 4:
        return True
    block = bytes(data[:4]) * (BLANK_BLOCK_BYTES // 4)
    for start in range(0, len(data) - len(data) % 4, BLANK_BLOCK_BYTES):
        chunk = data[start : start + BLANK_BLOCK_BYTES]
        if chunk != block[: len(chunk)]:
            return False
    return True


def fit_png(
    bgra: bytes | bytearray, width: int, height: int, cap: int, *, full_size: int
) -> tuple[bytes, int, int]:
    """The largest integer-stride downscale whose PNG fits in ``cap`` bytes.

    Returns ``(png, width, height)``; raises ``too_large`` when even the strongest
    allowed downscale (shorter side about :data:`MIN_SIDE_PX`) does not fit.
    """
    max_stride = max(2, min(width, height) // MIN_SIDE_PX)
    # A PNG shrinks roughly with its pixel count: start near the stride that should fit.
    first = min(max_stride, max(2, math.isqrt(full_size // cap)))
    size = full_size
    for stride in range(first, max_stride + 1):
        rgb, small_width, small_height = downscale_rgb(bgra, width, height, stride)
        png = to_png(rgb, small_width, small_height)
        if len(png) <= cap:
            return png, small_width, small_height
        size = len(png)
    raise CommandFailed(
        "too_large",
        f"the screenshot is {size} bytes even at 1/{max_stride} of its size "
        f"({width}x{height} screen); the limit is {cap} bytes",
    )


def downscale_rgb(
    bgra: bytes | bytearray, width: int, height: int, stride: int
) -> tuple[bytes, int, int]:
    """Every ``stride``-th pixel of every ``stride``-th row, as packed RGB."""
    pixels = memoryview(bgra).cast("I")  # one 32-bit word per BGRA pixel
    small_width = len(range(0, width, stride))
    small_height = len(range(0, height, stride))
    picked = bytearray(small_width * small_height * 4)
    out = memoryview(picked).cast("I")
    for row, y in enumerate(range(0, height, stride)):
        start = y * width
        out[row * small_width : (row + 1) * small_width] = pixels[start : start + width : stride]
    rgb = bytearray(small_width * small_height * 3)
    rgb[0::3] = picked[2::4]
    rgb[1::3] = picked[1::4]
    rgb[2::3] = picked[0::4]
    return bytes(rgb), small_width, small_height


def to_png(rgb: bytes, width: int, height: int) -> bytes:
    import mss.tools

    # Without an output path, to_png returns the PNG instead of writing it.
    return cast("bytes", mss.tools.to_png(rgb, (width, height)))


def _missing_display() -> str | None:
    if sys.platform in ("win32", "darwin"):
        return None  # no environment variable to check; mss itself reports failure
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "neither DISPLAY nor WAYLAND_DISPLAY is set"
    return None


def _no_display(detail: str) -> CommandFailed:
    return CommandFailed("no_display", f"no graphical display available: {detail} ({NO_DESKTOP})")


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv))
