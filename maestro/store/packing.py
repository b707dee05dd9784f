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

Agg = list[float]  # [n, min, sum, max]
Rollup = dict[int, Agg]  # key id -> aggregate


def pack_ids(ids: Sequence[int]) -> bytes:
    """The first half of a raw row (cached per key set: it repeats every second)."""
    return struct.pack(f"<{len(ids)}I", *ids)


def pack_values(values: Sequence[float]) -> bytes:
    """The second half of a raw row."""
    n = len(values)
    try:
        return struct.pack(f"<{n}f", *values)
    except OverflowError:  # beyond float32 (the contract's bounds make it rare): clamp
        return struct.pack(f"<{n}f", *(min(max(v, -F32_MAX), F32_MAX) for v in values))


def pack(ids: Sequence[int], values: Sequence[float]) -> bytes:
    return pack_ids(ids) + pack_values(values)


def unpack(data: bytes) -> tuple[tuple[int, ...], tuple[float, ...]]:
    n = len(data) // 8
    return struct.unpack_from(f"<{n}I", data), struct.unpack_from(f"<{n}f", data, 4 * n)


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


def merge_into(rollup: Rollup, other: Rollup) -> None:
    """Add ``other``'s aggregates to ``rollup``'s (counts and sums add; min, max)."""
    for key, (n, low, total, high) in other.items():
        agg = rollup.get(key)
        if agg is None:
            rollup[key] = [n, low, total, high]
        else:
            agg[0] += n
            agg[1] = min(agg[1], low)
            agg[2] += total
            agg[3] = max(agg[3], high)


def aggregate(datas: Sequence[bytes]) -> Rollup:
    """Packed raw rows into one rollup.

    Rows with the same keys (a machine sends the same every second) are unpacked
    together, in one ``struct`` call, and each key's values are a slice of the result:
    the per-value work stays in C.
    """
    by_ids: dict[bytes, list[bytes]] = {}
    for data in datas:
        half = 4 * (len(data) // 8)
        by_ids.setdefault(data[:half], []).append(data[half : 2 * half])
    rollup: Rollup = {}
    for ids_bytes, value_parts in by_ids.items():
        n = len(ids_bytes) // 4
        if n == 0:
            continue
        ids = struct.unpack(f"<{n}I", ids_bytes)
        values = struct.unpack(f"<{n * len(value_parts)}f", b"".join(value_parts))
        for index, key in enumerate(ids):
            column = values[index::n]
            agg: Agg = [float(len(column)), min(column), sum(column), max(column)]
            old = rollup.get(key)
            if old is None:
                rollup[key] = agg
            else:  # another key set, or the same key twice in a row (a mount listed twice)
                merge_into(rollup, {key: agg})
    return rollup


def aggregate_rollups(datas: Sequence[bytes]) -> Rollup:
    """Packed rollup rows into one rollup, as :func:`aggregate` does for raw rows."""
    by_ids: dict[bytes, list[bytes]] = {}
    for data in datas:
        n = len(data) // 24
        by_ids.setdefault(data[: 4 * n], []).append(data[: 24 * n])
    rollup: Rollup = {}
    for ids_bytes, parts in by_ids.items():
        n = len(ids_bytes) // 4
        if n == 0:
            continue
        values = struct.unpack("<" + f"{n}I{n}I{n}f{n}d{n}f" * len(parts), b"".join(parts))
        width = 5 * n
        for index, key in enumerate(values[:n]):
            agg: Agg = [
                float(sum(values[n + index :: width])),
                min(values[2 * n + index :: width]),
                sum(values[3 * n + index :: width]),
                max(values[4 * n + index :: width]),
            ]
            if key in rollup:
                merge_into(rollup, {key: agg})
            else:
                rollup[key] = agg
    return rollup
