"""Minute rollups of the detail rows, and retention of both.

The scalar rollups are updated by SQL in each batch's transaction; the detail rows are
packed blobs that SQL cannot aggregate, so they are *folded* later instead, at the
start of each retention pass (on the writer thread, in chunks of minutes, each its own
transaction, between sample batches). Each (agent, minute) in ``detail_dirty`` whose
minute is over has its rows from ``first`` on (the ones not rolled up: rowids grow
with each insert) aggregated a column at a time, merged into its ``detail_1m`` row
(count, min, sum, max per key: a late replay merges into a minute folded before) and
its mark deleted, in one transaction. A history query adds the rows of the minutes
still marked (:mod:`maestro.store.detail_query`), so an answer never lags the fold.

Retention never deletes raw rows of a minute still marked, so nothing is lost from the
rollups when a fold falls behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from maestro.store.packing import Rollup, aggregate, merge_into, pack_rollup, unpack_rollup

MINUTE: Final = 60  # the same minute as maestro.store.rollup (a test checks)
FOLD_CHUNK: Final = 500  # minutes (of one agent each) per transaction: ~30,000 raw rows
RETENTION_CHUNK: Final = 5000

_SELECT_DIRTY: Final = "SELECT agent_id, minute, first FROM detail_dirty WHERE minute < ? LIMIT ?"
# One second either side, filtered in Python: the minute of a row is computed as when it
# was marked (int(ts / 60) * 60), whatever rounding puts it at the edge.
_SELECT_ROWS: Final = (
    "SELECT ts, data FROM detail WHERE agent_id = ? AND ts >= ? AND ts < ? AND rowid >= ?"
)
_SELECT_ROLLUP: Final = "SELECT data FROM detail_1m WHERE agent_id = ? AND minute = ?"
_UPSERT_ROLLUP: Final = (
    "INSERT INTO detail_1m (agent_id, minute, data) VALUES (?, ?, ?)"
    " ON CONFLICT (agent_id, minute) DO UPDATE SET data = excluded.data"
)
_DELETE_DIRTY: Final = "DELETE FROM detail_dirty WHERE agent_id = ? AND minute = ?"


def minute_rows(
    conn: sqlite3.Connection, schema: str, agent: int, minute: int, first: int
) -> list[bytes]:
    """The packed raw rows of ``agent``'s ``minute`` from rowid ``first`` on."""
    sql = _SELECT_ROWS.replace("FROM detail", f"FROM {schema}.detail")
    found = conn.execute(sql, (agent, minute - 1, minute + MINUTE + 1, first))
    return [data for ts, data in found if int(ts / MINUTE) * MINUTE == minute]


def fold_chunk(conn: sqlite3.Connection, before: int, chunk: int = FOLD_CHUNK) -> int:
    """Fold up to ``chunk`` marked minutes older than ``before``; return how many.

    Runs inside the caller's transaction.
    """
    marked = conn.execute(_SELECT_DIRTY, (before, chunk)).fetchall()
    upserts = []
    for agent, minute, first in marked:
        rollup: Rollup = aggregate(minute_rows(conn, "main", agent, minute, first))
        old = conn.execute(_SELECT_ROLLUP, (agent, minute)).fetchone()
        if old is not None:  # a late sample: its minute was folded already
            merged = unpack_rollup(old[0])
            merge_into(merged, rollup)
            rollup = merged
        if rollup:
            upserts.append((agent, minute, pack_rollup(rollup)))
    conn.executemany(_UPSERT_ROLLUP, upserts)
    conn.executemany(_DELETE_DIRTY, [(agent, minute) for agent, minute, _ in marked])
    return len(marked)


def fold_steps(conn: sqlite3.Connection, now: float, chunk: int = FOLD_CHUNK) -> Iterator[int]:
    """Fold every marked minute that is over at ``now``, one chunk per transaction.

    Yields 0 per chunk (nothing is deleted). Must not be called inside a transaction.
    """
    before = int(now / MINUTE) * MINUTE
    while True:
        folded = _in_transaction(conn, lambda: fold_chunk(conn, before, chunk))
        yield 0
        if folded < chunk:
            return


_DELETE_RAW: Final = (  # 60: MINUTE
    "DELETE FROM detail WHERE rowid IN (SELECT rowid FROM detail WHERE agent_id = ?1"
    " AND ts < ?2 AND NOT EXISTS (SELECT 1 FROM detail_dirty d WHERE d.agent_id = ?1"
    " AND d.minute = CAST(detail.ts / 60 AS INTEGER) * 60) LIMIT ?3)"
)
_DELETE_ROLLUP: Final = (
    "DELETE FROM detail_1m WHERE rowid IN (SELECT rowid FROM detail_1m"
    " WHERE agent_id = ?1 AND minute < ?2 LIMIT ?3)"
)


def retention_steps(  # noqa: PLR0917 - the cutoffs of rollup.retention_steps, passed on
    conn: sqlite3.Connection,
    agents: Sequence[int],
    now: float,
    raw_cutoff: float,
    rollup_cutoff: int,
    chunk: int = RETENTION_CHUNK,
) -> Iterator[int]:
    """Fold, then delete expired detail rows and rollups; yields rows deleted per chunk."""
    yield from fold_steps(conn, now)
    for sql, cutoff in ((_DELETE_RAW, raw_cutoff), (_DELETE_ROLLUP, rollup_cutoff)):
        for agent in agents:
            while True:
                deleted = _in_transaction(conn, _deleter(conn, sql, (agent, cutoff, chunk)))
                yield max(deleted, 0)
                if deleted < chunk:
                    break


def _deleter(
    conn: sqlite3.Connection, sql: str, params: tuple[int | float, ...]
) -> Callable[[], int]:
    return lambda: conn.execute(sql, params).rowcount


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[], int]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = int(fn())
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
