"""The durable notification outbox (store component ``notify``).

One row per (channel, notice): ``pending`` until the channel answered 2xx (``sent``) or
refused it for good (``failed``). Rows are inserted by the alert service in the same
transaction as the alert change that caused them, so a crash can lose neither the
change nor its notification. A row is marked ``sent`` right after the 2xx; if that
mark cannot be stored (disk full) the dispatcher remembers it in memory and stores it
later, never sending the row again.

When the store refuses the alert change itself, its notices are *held* here in memory
(:class:`Memo`, in order) and delivered from memory: a page is never held back by a
full disk. When the change is finally stored, its rows are written with what already
happened to them (``sent``, ``failed``), so nothing is sent twice. See docs/alerts.md
for the exact duplicate window of a crash.

The functions taking ``conn`` run on the store's writer or reader threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


@dataclass(eq=False)
class Memo:
    """A notice decided by the alert engine, kept in memory until its rows are stored.

    ``done`` records what the memory path already did per channel (``("sent", at,
    None)`` or ``("failed", at, reason)``); ``next_at``/``attempts`` its backoff. While
    ``frozen`` (its rows are being written) the memory path leaves it alone.
    """

    notice: Notice
    created_at: float
    done: dict[str, tuple[str, float, str | None]] = field(default_factory=dict)
    next_at: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    frozen: bool = False
    inflight: set[str] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()


def enqueue(
    conn: sqlite3.Connection,
    channels: Sequence[str],
    notice: Notice,
    now: float,
    memo: Memo | None = None,
) -> int:
    """Queue ``notice`` once per channel; return how many rows were added.

    With ``memo``, a channel the notice already went to (or failed on) from memory gets
    a row in that final state, so it is never sent again.
    """
    body = encode_notice(notice)
    values: list[tuple[Any, ...]] = []
    for channel in channels:
        done = memo.done.get(channel) if memo is not None else None
        attempts = memo.attempts.get(channel, 0) if memo is not None else 0
        if done is not None:
            state, at, error = done
            values.append((channel, now, body, state, attempts, now, error, at))
            continue
        next_at = memo.next_at.get(channel, now) if memo is not None else now
        error = memo.errors.get(channel) if memo is not None else None
        values.append((channel, now, body, "pending", attempts, next_at, error, None))
    conn.executemany(
        "INSERT INTO notify_outbox (channel, created_at, body, state, attempts,"
        " next_attempt_at, last_error, done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        values,
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
        self.held: list[Memo] = []  # notices whose rows could not be stored yet, in order
        self.generation = 0  # bumped when held notices become stored rows

    def enqueue(
        self, conn: sqlite3.Connection, notice: Notice, now: float, memo: Memo | None = None
    ) -> int:
        if not self.channels:
            return 0
        return enqueue(conn, self.channels, notice, now, memo)

    # -- notices held in memory while the store refuses them (event loop only) ---------
    def hold(self, memos: Iterable[Memo]) -> None:
        """Deliver ``memos`` from memory until :meth:`release` (their rows are stored)."""
        added = False
        for memo in memos:
            if memo not in self.held:
                self.held.append(memo)
                added = True
        if added:
            self.wake()

    async def freeze(self, memos: Iterable[Memo]) -> None:
        """Keep the memory path off ``memos`` and wait for their sends in flight."""
        chosen = list(memos)
        for memo in chosen:
            memo.frozen = True
        for memo in chosen:
            await memo.idle.wait()

    def thaw(self, memos: Iterable[Memo]) -> None:
        """Their rows were not stored: the memory path may go on with them."""
        for memo in memos:
            memo.frozen = False
        self.wake()

    def release(self, memos: Iterable[Memo]) -> None:
        """Their rows are stored: the database path delivers what is left."""
        gone = set(map(id, memos))
        if not gone:
            return
        self.held = [memo for memo in self.held if id(memo) not in gone]
        self.generation += 1
        self.wake()

    def next_held(self, channel: str) -> Memo | None:
        """The oldest held notice ``channel`` still owes, if it may be sent now.

        None when nothing is owed, or when the oldest owed one is being stored (what
        comes after it waits: a channel delivers in order).
        """
        for memo in self.held:
            if channel in memo.done:
                continue
            return None if memo.frozen else memo
        return None

    def held_count(self) -> int:
        return len(self.held)

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
