"""Storing a batch around the rows the database refuses (the writer's second try).

One message must never stop storage for the whole fleet. When a batch fails with a
*row error* (:data:`ROW_ERRORS`), the writer stores it again here, in its own
transaction: one submission (one MQTT message) per savepoint, and the rows of a
submission that fails one per savepoint. Every good row is stored; each refused row is
rolled back to its savepoint, counted, logged (once a minute per agent) and dropped.
Any other error (disk full, I/O, a damaged file) is raised, so the writer keeps the
whole batch and retries it: such an error is never mistaken for a bad row.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

from maestro.store.rows import SampleRow
from maestro.store.samples import AgentIds, Stager, store_batch

log = logging.getLogger(__name__)

LOG_EVERY_S: Final = 60.0
ROW_ERRORS: Final = (
    OverflowError,  # an integer beyond SQLite's signed 64 bits
    ValueError,
    TypeError,
    sqlite3.InterfaceError,  # a value of a type SQLite cannot bind
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,  # NULL where a value belongs
    sqlite3.DataError,
)
"""Errors that belong to one row's values, never to the database or its disk."""


class RejectLog:
    """Logs refused rows at most once a minute per agent (a flood stays one line)."""

    def __init__(self) -> None:
        self._logged: dict[str, float] = {}

    def __call__(self, row: SampleRow, exc: BaseException) -> None:
        agent = str(row[0])[:256]
        now = time.monotonic()
        if now - self._logged.get(agent, -LOG_EVERY_S) < LOG_EVERY_S:
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[agent] = now
        log.error(
            "store refused a sample row and dropped it agent=%s seq=%.40r error=%s: %s"
            " (the rest of its batch is stored; counted in rows_rejected)",
            agent,
            row[1] if len(row) > 1 else None,
            type(exc).__name__,
            str(exc)[:200],
        )


def store_isolated(
    conn: sqlite3.Connection,
    ids: AgentIds,
    parts: Sequence[tuple[Sequence[SampleRow], float]],
    stagers: Sequence[Stager],
    on_reject: RejectLog,
) -> tuple[int, int]:
    """Store ``parts`` (rows, receive time) one by one; return (inserted, rejected).

    Runs in the caller's transaction. Agent ids are resolved before the savepoints, so
    rolling one back never forgets an id the writer's cache still holds.
    """
    inserted = rejected = 0
    for rows, rx in parts:
        for row in rows:
            if isinstance(row[0], str):
                ids.resolve(row[0])
        try:
            inserted += _savepoint(conn, ids, rows, stagers, rx)
        except ROW_ERRORS:  # one of its rows is refused: find which
            for row in rows:
                try:
                    inserted += _savepoint(conn, ids, (row,), stagers, rx)
                except ROW_ERRORS as exc:  # this row is refused: drop it
                    rejected += 1
                    on_reject(row, exc)
    return inserted, rejected


def _savepoint(
    conn: sqlite3.Connection,
    ids: AgentIds,
    rows: Sequence[SampleRow],
    stagers: Sequence[Stager],
    rx: float,
) -> int:
    conn.execute("SAVEPOINT isolate")
    try:
        inserted = store_batch(conn, ids, rows, stagers, [rx] * len(rows))
    except BaseException:
        conn.execute("ROLLBACK TO isolate")
        conn.execute("RELEASE isolate")
        raise
    conn.execute("RELEASE isolate")
    return inserted
