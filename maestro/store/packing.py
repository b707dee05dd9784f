"""How detail rows are packed: plain ``struct`` layouts, little-endian, no header.

A raw row: ``n`` key ids (uint32) then ``n`` values (float32), 8 bytes a value. A
rollup row: key ids and counts (uint32), minima (float32), sums (float64), maxima
(float32), 24 bytes a key. The length gives ``n``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

F32_MAX: Final = 3.4e38


# -- the packed row ----------------------------------------------------------------------
def pack(ids: Sequence[int], values: Sequence[float]) -> bytes:
    """``n`` key ids (uint32) then ``n`` values (float32), little-endian."""
    n = len(ids)
    try:
        return struct.pack(f"<{n}I{n}f", *ids, *values)
    except OverflowError:  # beyond float32 (the contract's bounds make it rare): clamp
        clamped = [min(max(value, -F32_MAX), F32_MAX) for value in values]
        return struct.pack(f"<{n}I{n}f", *ids, *clamped)


def unpack(data: bytes) -> tuple[tuple[int, ...], tuple[float, ...]]:
    n = len(data) // 8
    both = struct.unpack(f"<{n}I{n}f", data[: 8 * n])
    return both[:n], both[n:]  # ints, then floats


Agg = list[float]  # [n, min, sum, max]
Rollup = dict[int, Agg]  # key id -> aggregate


def pack_rollup(rollup: Rollup) -> bytes:
    ids = list(rollup)
    n = len(ids)
    aggs = [rollup[key] for key in ids]
    return struct.pack(
        f"<{n}I{n}I{n}f{n}d{n}f",
        *ids,
        *(int(a[0]) for a in aggs),
        *(a[1] for a in aggs),
        *(a[2] for a in aggs),
        *(a[3] for a in aggs),
    )


def unpack_rollup(data: bytes) -> Rollup:
    n = len(data) // 24
    values = struct.unpack(f"<{n}I{n}I{n}f{n}d{n}f", data[: 24 * n])
    return {
        values[i]: [float(values[n + i]), values[2 * n + i], values[3 * n + i], values[4 * n + i]]
        for i in range(n)
    }
