"""Command states decided while the store refuses writes (disk full) are kept in memory,
in order, and stored once it takes them again; the waiters are told at once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from arete.payloads import ReplyState
from maestro.commands import COMMAND_MIGRATIONS, records
from maestro.commands import tracker as tracker_module
from maestro.commands.lifecycle import CommandState, Delivered, Replied
from maestro.commands.records import CommandRecord
from maestro.commands.tracker import OpenCommands
from maestro.errors import StoreError
from maestro.events import EventBus
from maestro.store.db import migrate

T = TypeVar("T")


class FlakyStore:
    """Writes run at once on an in-memory database, or fail like a full disk."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(self.conn, "commands", COMMAND_MIGRATIONS)
        self.full = False

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.full:
            raise StoreError("store write failed: database or disk is full")
        self.conn.execute("BEGIN IMMEDIATE")
        result = fn(self.conn)
        self.conn.execute("COMMIT")
        return result

    def submit_write(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(self._run(fn))
        except StoreError as exc:
            future.set_exception(exc)
        return future

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn)


def stored_history(store: FlakyStore) -> tuple[str, list[str]]:
    state = store.conn.execute("SELECT state FROM commands WHERE id = 'c-1'").fetchone()[0]
    events = store.conn.execute(
        "SELECT state FROM command_events WHERE command_id = 'c-1' ORDER BY rowid"
    ).fetchall()
    return str(state), [str(e[0]) for e in events]


def test_command_states_refused_by_a_full_disk_are_stored_in_order_once_it_has_room(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(tracker_module, "STORE_RETRY_S", 0.01)

    async def scenario() -> None:
        store = FlakyStore()
        record = CommandRecord(
            id="c-1", agent="a1", name="metrics", args={}, state=CommandState.QUEUED,
            actor="alice", job_id=None, timeout_s=30.0, created_at=100.0,
            expires_at=10_000_000_000.0, updated_at=100.0,
        )  # fmt: skip
        store._run(lambda conn: records.insert(conn, record=record, detail="queued"))
        tracker = OpenCommands(store, EventBus(), grace_s=5.0, clock=lambda: 200.0)  # type: ignore[arg-type]
        entry = tracker.track(record)
        store.full = True
        tracker.advance("c-1", Delivered(), now=101.0)
        tracker.advance("c-1", Replied(ReplyState.ACCEPTED), now=102.0)
        tracker.advance("c-1", Replied(ReplyState.OK), {"cpu": 1}, now=103.0)
        final = await asyncio.wait_for(entry.done, 1.0)  # told at once, not when stored
        assert final.state is CommandState.OK
        await asyncio.sleep(0.1)
        assert tracker.store_failing is not None
        assert len(tracker.unstored) == 3
        assert stored_history(store) == ("queued", ["queued"])
        store.full = False
        async with asyncio.timeout(2.0):
            while tracker.unstored:  # noqa: ASYNC110 - polling plain state
                await asyncio.sleep(0.01)
        assert tracker.store_failing is None
        assert stored_history(store) == ("ok", ["queued", "sent", "accepted", "ok"])

    asyncio.run(scenario())
