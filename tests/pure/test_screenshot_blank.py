"""A screen whose every pixel has one colour is reported ``blank`` (not silently sent)."""

from __future__ import annotations

from edge_agent.handlers.screenshot import BLANK_BLOCK_BYTES, is_blank

GREY = bytes([0x40, 0x40, 0x40, 0xFF])


def test_one_colour_everywhere_is_blank_whatever_the_colour() -> None:
    assert is_blank(bytes(4 * 1000))
    assert is_blank(GREY * 1000)
    assert is_blank(b"")


def test_one_different_pixel_anywhere_is_not_blank() -> None:
    pixels = 3 * BLANK_BLOCK_BYTES // 4 + 7  # several blocks and a partial one
    for where in (1, BLANK_BLOCK_BYTES // 4, BLANK_BLOCK_BYTES // 4 + 1, pixels - 1):
        screen = bytearray(GREY * pixels)
        screen[4 * where + 1] ^= 0x01
        assert not is_blank(screen), f"pixel {where} differs"


def test_a_large_blank_screen_is_blank() -> None:
    assert is_blank(bytearray(GREY * (3840 * 2160)))
