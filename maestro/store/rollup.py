"""Minute rollups of the samples, and retention of both (and of the detail rows).

A rollup row holds, per agent and minute, the count, min, sum and max of each field
(``avg = sum / n`` at query time). Sums and counts rather than averages, so samples
that arrive after their minute closed (an agent replaying its outbox) merge exactly.

Retention deletes in small chunks, each its own transaction, so the writer can store
a batch of samples between two chunks and ingest never waits long behind it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from typing import Final

from maestro.store import detail_rollup
from maestro.store.rows import FIELDS
from maestro.store.settings import StoreSettings

log = logging.getLogger(__name__)

MINUTE: Final = 60
RETENTION_CHUNK: Final = 5000


def _rollup_sql() -> str:
    columns = ["agent_id", "minute", "n"]
    selects = ["agent_id", f"CAST(ts / {MINUTE} AS INTEGER) * {MINUTE} AS m", "count(*)"]
    merges = ["n = n + excluded.n"]
    for name in FIELDS:
        columns += [f"{name}_n", f"{name}_min", f"{name}_sum", f"{name}_max"]
        # total() is 0.0 where sum() would be NULL, so the sums never need coalescing.
        selects += [f"count({name})", f"min({name})", f"total({name})", f"max({name})"]
        # The scalar min()/max() return NULL if either side is NULL: coalesce both ways.
        merges += [
            f"{name}_n = {name}_n + excluded.{name}_n",
            f"{name}_min = min(coalesce({name}_min, excluded.{name}_min),"
            f" coalesce(excluded.{name}_min, {name}_min))",
            f"{name}_sum = {name}_sum + excluded.{name}_sum",
            f"{name}_max = max(coalesce({name}_max, excluded.{name}_max),"
            f" coalesce(excluded.{name}_max, {name}_max))",
        ]
    return (
        f"INSERT INTO rollup_1m ({', '.join(columns)})"  # noqa: S608 - constant column names
        f" SELECT {', '.join(selects)} FROM samples NOT INDEXED WHERE rowid > ?"
        " GROUP BY agent_id, m"
        f" ON CONFLICT (minute, agent_id) DO UPDATE SET {', '.join(merges)}"
    )


UPDATE_ROLLUPS: Final = _rollup_sql()


def update_rollups(conn: sqlite3.Connection, after_rowid: int) -> None:
    """Fold the samples with ``rowid > after_rowid`` (this batch's new ones) in."""
    conn.execute(UPDATE_ROLLUPS, (after_rowid,))


# -- retention ---------------------------------------------------------------------------
_DELETE_RAW: Final = (
    "DELETE FROM samples WHERE rowid IN"
    " (SELECT rowid FROM samples WHERE agent_id = ?1 AND ts < ?2 LIMIT ?3)"
)
_DELETE_ROLLUP: Final = (
    "DELETE FROM rollup_1m WHERE agent_id = ?1 AND minute IN"
    " (SELECT minute FROM rollup_1m WHERE agent_id = ?1 AND minute < ?2"
    " ORDER BY minute LIMIT ?3)"
)


def retention_steps(
    conn: sqlite3.Connection,
    now: float,
    settings: StoreSettings,
    chunk: int = RETENTION_CHUNK,
) -> Iterator[int]:
    """Delete expired raw samples and rollups, one chunk per transaction.

    Yields the number of rows each chunk deleted, after its commit: the writer stores
    pending batches between two steps. Must not be called inside a transaction.
    """
    raw_cutoff = now - settings.raw_retention_s
    # A minute is kept while any of it is inside the window.
    rollup_cutoff = int((now - settings.rollup_retention_s) // MINUTE) * MINUTE
    agents = [int(row[0]) for row in conn.execute("SELECT id FROM agents ORDER BY id")]
    for sql, cutoff in ((_DELETE_RAW, raw_cutoff), (_DELETE_ROLLUP, rollup_cutoff)):
        for agent in agents:
            while True:
                deleted = _delete_chunk(conn, sql, (agent, cutoff, chunk))
                yield deleted
                if deleted < chunk:
                    break
    # The per-item readings: folded into their rollups first, then pruned the same way.
    yield from detail_rollup.retention_steps(conn, agents, now, raw_cutoff, rollup_cutoff, chunk)


def apply_retention(
    conn: sqlite3.Connection,
    now: float,
    settings: StoreSettings,
    chunk: int = RETENTION_CHUNK,
) -> int:
    """Run a whole retention pass at ``now``; return the rows deleted."""
    deleted = sum(retention_steps(conn, now, settings, chunk))
    log.info("store retention done deleted=%d", deleted)
    return deleted


def _delete_chunk(conn: sqlite3.Connection, sql: str, params: tuple[int | float, ...]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = conn.execute(sql, params).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return max(deleted, 0)
