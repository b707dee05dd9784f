"""History of the per-item readings (detail): which keys a query names, and their buckets.

A query names detail keys exactly (``cpu.3``, ``temp:nvme``) or by family pattern
(``cpu.*``, ``mount:*``, ``temp:*``, ``gpu.*``, ``mount_used:*``, ``mount_total:*``),
or everything with ``*``. Buckets are accumulated as ``[n, min, sum, max]`` so the
answers of several store files (one per replica) merge exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from maestro.store.detail import DETAIL_PATTERNS, key_names
from maestro.store.detail_rollup import minute_rows
from maestro.store.packing import Agg, Rollup, aggregate, aggregate_rollups

Buckets = dict[int, dict[str, Agg]]
"""bucket number -> field name -> ``[n, min, sum, max]``"""


@dataclass(slots=True)
class Wanted:
    """The detail keys a query asks for: exact names, family prefixes, or all."""

    exact: set[str] = field(default_factory=set)
    prefixes: list[str] = field(default_factory=list)
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.exact) or bool(self.prefixes)

    def matches(self, name: str) -> bool:
        return self.everything or name in self.exact or name.startswith(tuple(self.prefixes))

    def add_pattern(self, pattern: str) -> None:
        if pattern == "*":
            self.everything = True
        else:
            assert pattern in DETAIL_PATTERNS  # noqa: S101 - checked by the caller
            self.prefixes.append(pattern[:-1])


def accumulate(buckets: Buckets, bucket: int, name: str, agg: Agg) -> None:
    fields = buckets.get(bucket)
    if fields is None:
        fields = buckets[bucket] = {}
    old = fields.get(name)
    if old is None:
        fields[name] = list(agg)
    else:
        old[0] += agg[0]
        old[1] = min(old[1], agg[1])
        old[2] += agg[2]
        old[3] = max(old[3], agg[3])


def _add_raw_rows(
    buckets: Buckets, rows: Iterable[tuple[float, bytes]], names: dict[int, str], step: float
) -> None:
    """Raw rows into buckets of ``step``, a column at a time per bucket."""
    by_bucket: dict[int, list[bytes]] = {}
    for ts, data in rows:
        by_bucket.setdefault(int(ts / step), []).append(data)  # as SQL's CAST
    for bucket, packed in by_bucket.items():
        _add_rollup(buckets, bucket, aggregate(packed), names)


def _add_rollup(buckets: Buckets, bucket: int, rollup: Rollup, names: dict[int, str]) -> None:
    for key, agg in rollup.items():
        name = names.get(key)
        if name is not None:
            accumulate(buckets, bucket, name, agg)


def add_detail(
    conn: sqlite3.Connection,
    schema: str,
    agent_id: int,
    wanted: Wanted,
    buckets: Buckets,
    *,
    rollup: bool,
    step: float,
    start: float,
    end: float,
) -> None:
    """Accumulate one store file's detail of ``agent_id`` in ``[start, end)``.

    ``schema`` is ``main`` or an attached replica file (a name from ``PRAGMA
    database_list``, never user input). For rollups ``start`` is on a minute, and the
    minutes not folded yet add their raw rows not rolled up.
    """
    names = {key: name for key, name in key_names(conn, schema).items() if wanted.matches(name)}
    if not names:
        return
    s = schema
    if not rollup:
        rows = conn.execute(
            f"SELECT ts, data FROM {s}.detail WHERE agent_id = ? AND ts >= ? AND ts < ?",  # noqa: S608
            (agent_id, start, end),
        )
        _add_raw_rows(buckets, rows, names, step)
        return
    whole = int(step)  # rollup steps are whole minutes
    sql = (
        f"SELECT minute, data FROM {s}.detail_1m WHERE agent_id = ? AND minute >= ? AND minute < ?"  # noqa: S608
    )
    by_bucket: dict[int, list[bytes]] = {}
    for minute, data in conn.execute(sql, (agent_id, start, end)):
        by_bucket.setdefault(minute // whole, []).append(data)
    for bucket, packed in by_bucket.items():
        _add_rollup(buckets, bucket, aggregate_rollups(packed), names)
    dirty = conn.execute(
        f"SELECT minute, first FROM {s}.detail_dirty"  # noqa: S608
        " WHERE agent_id = ? AND minute >= ? AND minute < ?",
        (agent_id, start, end),
    ).fetchall()
    for minute, first in dirty:
        packed = minute_rows(conn, s, agent_id, minute, first)
        _add_rollup(buckets, minute // whole, aggregate(packed), names)
