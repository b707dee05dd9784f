"""History queries: one agent's fields over a time window, downsampled into buckets.

Fields are the stored columns and the per-item readings (:mod:`maestro.store.detail`),
read from this replica's store file and from its siblings' (each replica stores only
its share of the metrics), merged bucket by bucket.

Buckets are aligned to multiples of ``step`` in unix time (not to ``start``), so the
same bucket has the same bounds in every query and a chart that scrolls does not
shimmer. Each bucket gives min, avg and max of each field; buckets without any
sample are left out rather than filled with nulls.

Source: the raw 1 s samples when the step is under a minute and the whole window is
inside raw retention; otherwise the 1-minute rollups, with the step rounded to whole
minutes (the rollups cannot split a minute, so a rollup bucket holds every sample of
the minutes it covers, including those just before ``start``).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from maestro.errors import QueryError
from maestro.store.detail import DETAIL_PATTERNS, is_detail_name
from maestro.store.detail_query import Buckets, Wanted, accumulate, add_detail
from maestro.store.rollup import MINUTE
from maestro.store.rows import FIELD_SET, FIELDS
from maestro.store.samples import find_agent_id

MAX_BUCKETS: Final = 10_000
DEFAULT_RAW_RETENTION_S: Final = 48 * 3600.0
MAX_AGENT_NAME: Final = 256

Series = dict[str, list[float | None]]
"""``{"min": [...], "avg": [...], "max": [...]}``, one value per bucket of ``History.ts``."""


class History(msgspec.Struct, kw_only=True, frozen=True):
    """The answer of :func:`query_history`, ready for ``msgspec.json.encode``."""

    agent: str
    start: float
    end: float
    step: float  # the step used, after rounding to whole minutes for rollups
    source: Literal["raw", "rollup"]
    ts: list[float]  # bucket starts, ascending
    series: dict[str, Series]


def query_history(
    conn: sqlite3.Connection,
    agent: str,
    fields: Sequence[str],
    *,
    start: float,
    end: float,
    step: float,
    now: float,
    raw_retention_s: float = DEFAULT_RAW_RETENTION_S,
    schemas: Sequence[str] = ("main",),
) -> History:
    """Fields of ``agent`` over ``[start, end)`` in buckets of ``step`` seconds.

    ``fields`` are stored columns (:data:`FIELDS`), detail keys (``cpu.3``,
    ``temp:nvme``), detail patterns (``cpu.*``, ``mount:*``, ``temp:*``, ``gpu.*``,
    ...) or ``*`` for everything; a pattern gives one series per key found in the
    window. ``schemas`` are the store files to read (``main`` and attached replica
    files, see :mod:`maestro.store.replicas`); their buckets are merged.

    An agent that never sent a sample gets an empty history (the registry, not the
    store, knows which agents exist). Raises :class:`QueryError` for unknown fields,
    a bad window or step, or more than :data:`MAX_BUCKETS` buckets.
    """
    names, wanted = _check_fields(fields)
    _check_window(agent, start, end, step)
    use_rollup = (
        step >= MINUTE
        or start < now - raw_retention_s
        or (bool(wanted) and end - start > DETAIL_RAW_MAX_S)
    )
    start_key: float
    if use_rollup:
        step = max(1, round(step / MINUTE)) * MINUTE
        start_key = math.floor(start / MINUTE) * MINUTE
    else:
        start_key = start
    buckets_asked = math.ceil(end / step) - math.floor(start_key / step)
    if buckets_asked > MAX_BUCKETS:
        raise QueryError(
            f"{buckets_asked} buckets of {step:g} s between {start:g} and {end:g}: at most"
            f" {MAX_BUCKETS}; ask for a larger step or a shorter window"
        )
    source: Literal["raw", "rollup"] = "rollup" if use_rollup else "raw"
    buckets: Buckets = {}
    began = not conn.in_transaction
    if began:  # one snapshot of every file: a fold between two reads cannot count twice
        conn.execute("BEGIN")
    try:
        for schema in schemas:
            found = _agent_id(conn, schema, agent)
            if found is None:
                continue
            if names:
                _add_columns(
                    conn, schema, found, names, buckets,
                    rollup=use_rollup, step=step, start=start_key, end=end,
                )  # fmt: skip
            if wanted:
                add_detail(
                    conn, schema, found, wanted, buckets,
                    rollup=use_rollup, step=step, start=start_key, end=end,
                )  # fmt: skip
    finally:
        if began:
            conn.execute("COMMIT")
    return History(
        agent=agent,
        start=start,
        end=end,
        step=step,
        source=source,
        ts=[float(bucket * step) for bucket in sorted(buckets)],
        series=_series(fields, buckets),
    )


DETAIL_RAW_MAX_S: Final = 6 * 3600.0
"""Per-item readings come from the rollups past this window (raw rows are decoded one by
one: a 48 h window of 1 s rows would take seconds)."""


def _agent_id(conn: sqlite3.Connection, schema: str, agent: str) -> int | None:
    if schema == "main":
        return find_agent_id(conn, agent)
    sql = f"SELECT id FROM {schema}.agents WHERE name = ?"  # noqa: S608 - from PRAGMA
    try:
        row = conn.execute(sql, (agent,)).fetchone()
    except sqlite3.OperationalError:  # a replica file without tables yet
        return None
    return int(row[0]) if row else None


def _add_columns(
    conn: sqlite3.Connection,
    schema: str,
    agent_id: int,
    names: Sequence[str],
    buckets: Buckets,
    *,
    rollup: bool,
    step: float,
    start: float,
    end: float,
) -> None:
    sql = _rollup_sql(schema, names) if rollup else _raw_sql(schema, names)
    for row in conn.execute(sql, (step, agent_id, start, end)):
        bucket = int(row[0])
        fields = buckets.get(bucket)
        if fields is None:
            fields = buckets[bucket] = {}
        for index, name in enumerate(names):
            base = 1 + 4 * index
            n = row[base]
            if n:
                accumulate(buckets, bucket, name, [n, row[base + 1], row[base + 2], row[base + 3]])


def _series(asked: Sequence[str], buckets: Buckets) -> dict[str, Series]:
    """One series per field asked for; a pattern gives one per key found."""
    order = sorted(buckets)
    found: set[str] = set()
    for fields in buckets.values():
        found.update(fields)
    series_names: dict[str, None] = {}  # ordered, without repeats
    for item in [asked] if isinstance(asked, str) else asked:
        if item == "*":
            more = [*FIELDS, *sorted(found - FIELD_SET, key=_natural)]
        elif item in DETAIL_PATTERNS:
            more = sorted((n for n in found if n.startswith(item[:-1])), key=_natural)
        else:
            more = [item]
        series_names.update(dict.fromkeys(more))
    rows = [buckets[bucket] for bucket in order]
    series: dict[str, Series] = {}
    for name in series_names:
        aggs = [row.get(name) for row in rows]
        if name in FIELD_SET:
            lows = [a[1] if a else None for a in aggs]
            avgs = [a[2] / a[0] if a else None for a in aggs]
            highs = [a[3] if a else None for a in aggs]
        else:  # stored as float32: 7 digits, without the binary noise (40.1, not 40.09999)
            lows = [float(f"{a[1]:.7g}") if a else None for a in aggs]
            avgs = [float(f"{a[2] / a[0]:.7g}") if a else None for a in aggs]
            highs = [float(f"{a[3]:.7g}") if a else None for a in aggs]
        series[name] = {"min": lows, "avg": avgs, "max": highs}
    return series


def _natural(name: str) -> list[object]:
    """``cpu.2`` before ``cpu.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _check_fields(fields: Sequence[str]) -> tuple[list[str], Wanted]:
    """The stored columns asked for, and the detail keys (names, patterns) asked for."""
    if isinstance(fields, str):
        fields = [fields]
    if not fields:
        raise QueryError(f"no fields asked for; known fields: {KNOWN}")
    if not all(isinstance(name, str) for name in fields):
        raise QueryError(f"fields must be names, not {list(fields)!r:.80}")
    asked = list(dict.fromkeys(fields))  # keep the caller's order, drop repeats
    unknown = [
        name
        for name in asked
        if name not in FIELD_SET
        and name != "*"
        and name not in DETAIL_PATTERNS
        and not is_detail_name(name)
    ]
    if unknown:
        raise QueryError(
            f"unknown field(s) {', '.join(repr(n[:80]) for n in unknown[:5])};"
            f" known fields: {KNOWN}"
        )
    wanted = Wanted()
    columns: list[str] = []
    for name in asked:
        if name == "*":
            wanted.add_pattern(name)
            columns += [f for f in FIELDS if f not in columns]
        elif name in FIELD_SET:
            if name not in columns:
                columns.append(name)
        elif name in DETAIL_PATTERNS:
            wanted.add_pattern(name)
        else:
            wanted.exact.add(name)
    return columns, wanted


KNOWN: Final = (
    f"{', '.join(FIELDS)}; per item: cpu.<core>, mount:<path>, mount_used:<path>,"
    " mount_total:<path>, temp:<sensor>, gpu.<i>.util|mem|temp|power, uptime_s, mem_used,"
    " mem_total, load5, load15, disk_read_iops, disk_write_iops; families:"
    f" {', '.join(DETAIL_PATTERNS)}, or * for everything"
)


def _check_window(agent: str, start: float, end: float, step: float) -> None:
    if not isinstance(agent, str) or not agent or len(agent) > MAX_AGENT_NAME:
        raise QueryError(f"bad agent name {agent!r:.80}")
    for label, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise QueryError(f"{label} must be a number of seconds, not {value!r:.80}")
        if not math.isfinite(value):
            raise QueryError(f"{label} must be finite, not {value!r}")
    if step <= 0:
        raise QueryError(f"step must be positive, not {step:g}")
    if start < 0:
        raise QueryError(f"start must be unix seconds (>= 0), not {start:g}")
    if end <= start:
        raise QueryError(f"end ({end:g}) must be after start ({start:g})")


def _raw_sql(schema: str, names: Sequence[str]) -> str:
    # names are checked against FIELDS and schema comes from PRAGMA database_list.
    aggregates = ", ".join(f"count({n}), min({n}), total({n}), max({n})" for n in names)
    return (
        f"SELECT CAST(ts / ?1 AS INTEGER) AS bucket, {aggregates} FROM {schema}.samples"  # noqa: S608
        " WHERE agent_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY bucket ORDER BY bucket"
    )


def _rollup_sql(schema: str, names: Sequence[str]) -> str:
    aggregates = ", ".join(f"sum({n}_n), min({n}_min), total({n}_sum), max({n}_max)" for n in names)
    return (
        f"SELECT minute / ?1 AS bucket, {aggregates} FROM {schema}.rollup_1m"  # noqa: S608
        " WHERE agent_id = ?2 AND minute >= ?3 AND minute < ?4 GROUP BY bucket ORDER BY bucket"
    )


MAX_LIMIT: Final = 1000


def check_limit(limit: int) -> int:
    """A listing's page size: 1 .. :data:`MAX_LIMIT`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r:.40}")
    return limit
