"""Audit entries the store refuses (disk full) are kept in order and stored later; the
caller is never failed for them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from maestro.errors import StoreError
from maestro.late_writes import LateWrites
from maestro.store.audit import AUDIT_MIGRATIONS, add_audit
from maestro.store.db import migrate

T = TypeVar("T")


class FlakyStore:
    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(self.conn, "audit", AUDIT_MIGRATIONS)
        self.full = False

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await asyncio.sleep(0)
        if self.full:
            raise StoreError("store write failed: database or disk is full")
        self.conn.execute("BEGIN IMMEDIATE")
        result = fn(self.conn)
        self.conn.execute("COMMIT")
        return result


def entry(action: str) -> Callable[[sqlite3.Connection], object]:
    return partial(add_audit, ts=1.0, actor="alice", action=action, target="a1", detail={})


def test_audit_entries_refused_by_a_full_disk_are_stored_later_in_order() -> None:
    async def scenario() -> list[str]:
        store = FlakyStore()
        late = LateWrites(store, retry_s=0.01)  # type: ignore[arg-type]
        await late.write(entry("auth.login"))
        store.full = True
        await late.write(entry("command.send"))  # does not raise
        store.full = False
        await late.write(entry("auth.logout"))  # behind the held one, not before it
        assert late.held == 2
        async with asyncio.timeout(2.0):
            while late.held:  # noqa: ASYNC110 - polling plain state
                await asyncio.sleep(0.01)
        assert late.failing is None
        rows = store.conn.execute("SELECT action FROM audit ORDER BY rowid").fetchall()
        return [str(row[0]) for row in rows]

    assert asyncio.run(scenario()) == ["auth.login", "command.send", "auth.logout"]


def test_past_the_limit_the_oldest_held_entries_are_dropped_and_counted() -> None:
    async def scenario() -> tuple[int, int]:
        store = FlakyStore()
        store.full = True
        late = LateWrites(store, retry_s=10.0, max_held=3)  # type: ignore[arg-type]
        for index in range(5):
            await late.write(entry(f"a{index}"))
        return late.held, late.dropped

    assert asyncio.run(scenario()) == (3, 2)
