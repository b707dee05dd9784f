"""Minute rollups of the detail rows, and retention of both.

The scalar rollups are updated by SQL in each batch's transaction; the detail rows are
packed blobs that SQL cannot aggregate, so they are *folded* later instead, in chunks,
at the start of each retention pass (on the writer thread, between sample batches):
the rows past ``detail_fold.upto`` (in rowid order, which is arrival order, so late
replays are folded too) are grouped by agent and minute, merged into ``detail_1m``
(count, min, sum, max per key) and ``upto`` moves on, all in one transaction. A
history query over rollups adds the rows not folded yet (:mod:`maestro.store.
detail_query`), so the answer never lags the fold.

A rollup row packs, for its ``n`` keys: key ids and counts (uint32), minima (float32),
sums (float64), maxima (float32): 24 bytes a key.

Retention deletes raw rows only once they are folded, so nothing is lost from the
rollups when a fold falls behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from maestro.store.packing import Rollup, pack_rollup, unpack, unpack_rollup

MINUTE: Final = 60  # the same minute as maestro.store.rollup (a test checks)
FOLD_CHUNK: Final = 20_000
RETENTION_CHUNK: Final = 5000


def merge_into(rollup: Rollup, other: Rollup) -> None:
    for key, (n, low, total, high) in other.items():
        agg = rollup.get(key)
        if agg is None:
            rollup[key] = [n, low, total, high]
        else:
            agg[0] += n
            agg[1] = min(agg[1], low)
            agg[2] += total
            agg[3] = max(agg[3], high)


def fold_rows(rows: Sequence[tuple[int, float, bytes]]) -> dict[tuple[int, int], Rollup]:
    """``(agent_id, ts, data)`` raw rows grouped into ``{(agent_id, minute): rollup}``."""
    groups: dict[tuple[int, int], Rollup] = {}
    for agent, ts, data in rows:
        group_key = (agent, int(ts // MINUTE) * MINUTE)
        rollup = groups.get(group_key)
        if rollup is None:
            rollup = groups[group_key] = {}
        ids, values = unpack(data)
        for key, value in zip(ids, values, strict=True):
            agg = rollup.get(key)
            if agg is None:
                rollup[key] = [1.0, value, value, value]
            else:
                agg[0] += 1
                agg[1] = min(agg[1], value)
                agg[2] += value
                agg[3] = max(agg[3], value)
    return groups


_SELECT_NEW: Final = (
    "SELECT rowid, agent_id, ts, data FROM detail WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
_SELECT_ROLLUP: Final = "SELECT data FROM detail_1m WHERE agent_id = ? AND minute = ?"
_UPSERT_ROLLUP: Final = (
    "INSERT INTO detail_1m (agent_id, minute, data) VALUES (?, ?, ?)"
    " ON CONFLICT (agent_id, minute) DO UPDATE SET data = excluded.data"
)


def fold_chunk(conn: sqlite3.Connection, chunk: int = FOLD_CHUNK) -> int:
    """Fold up to ``chunk`` raw rows into the rollups; return how many. In a transaction."""
    upto = int(conn.execute("SELECT upto FROM detail_fold").fetchone()[0])
    found = conn.execute(_SELECT_NEW, (upto, chunk)).fetchall()
    if not found:
        return 0
    groups = fold_rows([(agent, ts, data) for _, agent, ts, data in found])
    upserts = []
    for (agent, minute), rollup in groups.items():
        old = conn.execute(_SELECT_ROLLUP, (agent, minute)).fetchone()
        merged = rollup
        if old is not None:  # a late sample: its minute was folded already
            merged = unpack_rollup(old[0])
            merge_into(merged, rollup)
        upserts.append((agent, minute, pack_rollup(merged)))
    conn.executemany(_UPSERT_ROLLUP, upserts)
    conn.execute("UPDATE detail_fold SET upto = ?", (found[-1][0],))
    return len(found)


def fold_steps(conn: sqlite3.Connection, chunk: int = FOLD_CHUNK) -> Iterator[int]:
    """Fold every raw row not folded yet, one chunk per transaction; yields 0 per chunk
    (nothing is deleted). Must not be called inside a transaction."""
    while True:
        folded = _in_transaction(conn, lambda: fold_chunk(conn, chunk))
        yield 0
        if folded < chunk:
            return


_DELETE_RAW: Final = (
    "DELETE FROM detail WHERE rowid IN (SELECT rowid FROM detail"
    " WHERE agent_id = ?1 AND ts < ?2 AND rowid <= (SELECT upto FROM detail_fold) LIMIT ?3)"
)
_DELETE_ROLLUP: Final = (
    "DELETE FROM detail_1m WHERE rowid IN (SELECT rowid FROM detail_1m"
    " WHERE agent_id = ?1 AND minute < ?2 LIMIT ?3)"
)


def retention_steps(
    conn: sqlite3.Connection,
    agents: Sequence[int],
    raw_cutoff: float,
    rollup_cutoff: int,
    chunk: int = RETENTION_CHUNK,
) -> Iterator[int]:
    """Fold, then delete expired detail rows and rollups; yields rows deleted per chunk."""
    yield from fold_steps(conn)
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
