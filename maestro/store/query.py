"""History queries: one agent's fields over a time window, downsampled into buckets.

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
import sqlite3
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from maestro.errors import QueryError
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
) -> History:
    """Fields of ``agent`` over ``[start, end)`` in buckets of ``step`` seconds.

    An agent that never sent a sample gets an empty history (the registry, not the
    store, knows which agents exist). Raises :class:`QueryError` for unknown fields,
    a bad window or step, or more than :data:`MAX_BUCKETS` buckets.
    """
    names = _check_fields(fields)
    _check_window(agent, start, end, step)
    use_rollup = step >= MINUTE or start < now - raw_retention_s
    start_key: float
    if use_rollup:
        step = max(1, round(step / MINUTE)) * MINUTE
        start_key = math.floor(start / MINUTE) * MINUTE
    else:
        start_key = start
    buckets = math.ceil(end / step) - math.floor(start_key / step)
    if buckets > MAX_BUCKETS:
        raise QueryError(
            f"{buckets} buckets of {step:g} s between {start:g} and {end:g}: at most"
            f" {MAX_BUCKETS}; ask for a larger step or a shorter window"
        )
    source: Literal["raw", "rollup"] = "rollup" if use_rollup else "raw"
    ts: list[float] = []
    series: dict[str, Series] = {name: {"min": [], "avg": [], "max": []} for name in names}
    found = find_agent_id(conn, agent)
    if found is not None:
        sql = _rollup_sql(names) if use_rollup else _raw_sql(names)
        params = (step, found, start_key, end)
        for row in conn.execute(sql, params):
            ts.append(float(row[0] * step))
            for index, name in enumerate(names):
                values = series[name]
                base = 1 + 3 * index
                values["min"].append(row[base])
                values["avg"].append(row[base + 1])
                values["max"].append(row[base + 2])
    return History(
        agent=agent, start=start, end=end, step=step, source=source, ts=ts, series=series
    )


def _check_fields(fields: Sequence[str]) -> list[str]:
    if isinstance(fields, str):
        fields = [fields]
    if not fields:
        raise QueryError(f"no fields asked for; known fields: {', '.join(FIELDS)}")
    if not all(isinstance(name, str) for name in fields):
        raise QueryError(f"fields must be names, not {list(fields)!r:.80}")
    names = list(dict.fromkeys(fields))  # keep the caller's order, drop repeats
    unknown = [name for name in names if name not in FIELD_SET]
    if unknown:
        raise QueryError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; known fields: {', '.join(FIELDS)}"
        )
    return names


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


def _raw_sql(names: Sequence[str]) -> str:
    # names are checked against FIELDS before they get here; nothing else is interpolated.
    aggregates = ", ".join(f"min({n}), avg({n}), max({n})" for n in names)
    return (
        f"SELECT CAST(ts / ?1 AS INTEGER) AS bucket, {aggregates} FROM samples"  # noqa: S608
        " WHERE agent_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY bucket ORDER BY bucket"
    )


def _rollup_sql(names: Sequence[str]) -> str:
    aggregates = ", ".join(
        f"min({n}_min), total({n}_sum) / nullif(sum({n}_n), 0), max({n}_max)" for n in names
    )
    return (
        f"SELECT minute / ?1 AS bucket, {aggregates} FROM rollup_1m"  # noqa: S608 - checked names
        " WHERE agent_id = ?2 AND minute >= ?3 AND minute < ?4 GROUP BY bucket ORDER BY bucket"
    )


MAX_LIMIT: Final = 1000


def check_limit(limit: int) -> int:
    """A listing's page size: 1 .. :data:`MAX_LIMIT`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r:.40}")
    return limit
