"""The durable notification outbox (store component ``notify``).

One row per (channel, notice): ``pending`` until the channel answered 2xx (``sent``) or
refused it for good (``failed``). Rows are inserted by the alert service in the same
transaction as the alert change that caused them, so a crash can lose neither the
change nor its notification. A row is marked ``sent`` right after the 2xx: the only
way to send a message twice is a crash between that answer and the commit (a few
milliseconds), which this accepts rather than risk never sending.

The functions taking ``conn`` run on the store's writer or reader threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from maestro.notify.message import Notice, encode_notice

NOTIFY_MIGRATIONS: Final = [
    """
    CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        created_at REAL NOT NULL,
        body BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        done_at REAL
    );
    CREATE INDEX notify_outbox_pending ON notify_outbox (channel, id) WHERE state = 'pending';
    CREATE INDEX notify_outbox_done ON notify_outbox (done_at) WHERE state != 'pending';
    CREATE TABLE notify_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]

MAX_ERROR_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    channel: str
    created_at: float
    body: bytes
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None


_COLUMNS: Final = "id, channel, created_at, body, state, attempts, next_attempt_at, last_error"


def _row(values: Any) -> OutboxRow:
    id_, channel, created_at, body, state, attempts, next_at, error = values
    return OutboxRow(
        int(id_),
        str(channel),
        float(created_at),
        bytes(body),
        str(state),
        int(attempts),
        float(next_at),
        None if error is None else str(error),
    )


def enqueue(conn: sqlite3.Connection, channels: Sequence[str], notice: Notice, now: float) -> int:
    """Queue ``notice`` once per channel; return how many rows were added."""
    body = encode_notice(notice)
    conn.executemany(
        "INSERT INTO notify_outbox (channel, created_at, body, next_attempt_at)"
        " VALUES (?, ?, ?, ?)",
        [(channel, now, body, now) for channel in channels],
    )
    return len(channels)


def pending_rows(conn: sqlite3.Connection, channel: str, limit: int = 20) -> list[OutboxRow]:
    """The channel's pending rows, oldest first (a channel delivers in order)."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM notify_outbox"  # noqa: S608 - constant column list
        " WHERE channel = ? AND state = 'pending' ORDER BY id LIMIT ?",
        (channel, limit),
    )
    return [_row(values) for values in cursor.fetchall()]


def all_rows(conn: sqlite3.Connection) -> list[OutboxRow]:
    cursor = conn.execute(f"SELECT {_COLUMNS} FROM notify_outbox ORDER BY id")  # noqa: S608
    return [_row(values) for values in cursor.fetchall()]


def mark_sent(conn: sqlite3.Connection, row_id: int, now: float) -> None:
    conn.execute(
        "UPDATE notify_outbox SET state = 'sent', attempts = attempts + 1, done_at = ?,"
        " last_error = NULL WHERE id = ? AND state = 'pending'",
        (now, row_id),
    )


def mark_retry(conn: sqlite3.Connection, row_id: int, next_attempt_at: float, error: str) -> None:
    conn.execute(
        "UPDATE notify_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
        " WHERE id = ? AND state = 'pending'",
        (next_attempt_at, error[:MAX_ERROR_CHARS], row_id),
    )


def mark_failed(conn: sqlite3.Connection, row_id: int, now: float, error: str) -> None:
    conn.execute(
        "UPDATE notify_outbox SET state = 'failed', attempts = attempts + 1, done_at = ?,"
        " last_error = ? WHERE id = ? AND state = 'pending'",
        (now, error[:MAX_ERROR_CHARS], row_id),
    )


def fail_unknown_channels(conn: sqlite3.Connection, known: Sequence[str], now: float) -> int:
    """Pending rows of channels no longer configured (a chat removed) fail for good."""
    marks = ", ".join("?" for _ in known)  # only placeholders go into the statement
    statement = (
        "UPDATE notify_outbox SET state = 'failed', done_at = ?,"  # noqa: S608
        " last_error = 'channel no longer configured'"
        f" WHERE state = 'pending' AND channel NOT IN ({marks})"
    )
    cursor = conn.execute(statement, (now, *known))
    return cursor.rowcount


def count_pending(conn: sqlite3.Connection) -> dict[str, int]:
    cursor = conn.execute(
        "SELECT channel, COUNT(*) FROM notify_outbox WHERE state = 'pending' GROUP BY channel"
    )
    return {str(channel): int(count) for channel, count in cursor.fetchall()}


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Forget delivered and failed rows finished before ``before``."""
    cursor = conn.execute(
        "DELETE FROM notify_outbox WHERE state != 'pending' AND done_at < ?", (before,)
    )
    return cursor.rowcount


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM notify_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO notify_state (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


class Outbox:
    """The channels a notice goes to, and the wake-up of their delivery loops.

    The alert service calls :meth:`enqueue` inside its write transaction (writer
    thread) and :meth:`wake` on the event loop once that transaction committed.
    """

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels: tuple[str, ...] = tuple(channels)
        self._events: dict[str, asyncio.Event] = {name: asyncio.Event() for name in channels}
        self.queued = 0  # notices queued since start (each once per channel)

    def enqueue(self, conn: sqlite3.Connection, notice: Notice, now: float) -> int:
        if not self.channels:
            return 0
        return enqueue(conn, self.channels, notice, now)

    def wake(self) -> None:
        for event in self._events.values():
            event.set()

    async def wait(self, channel: str, idle_s: float) -> None:
        """Until :meth:`wake` or ``idle_s`` seconds, whichever comes first."""
        event = self._events[channel]
        # asyncio.timeout rather than wait_for: Python 3.11's wait_for can swallow a
        # cancellation that arrives as the event is set, and the task never stops.
        try:
            async with asyncio.timeout(idle_s):
                await event.wait()
        except TimeoutError:
            return
        event.clear()
