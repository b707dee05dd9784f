"""The open commands of one service: their state in memory, deadlines, replies, waiters.

Every state change goes through :meth:`OpenCommands.advance`, in this order: the pure
:func:`~maestro.commands.lifecycle.settle` decides; memory changes at once (so the
next reply, a moment later, sees it); the store's writer thread records it (in order:
it is one thread); once stored, the change is published on the event bus and, when
final, waiters get the final record and the command leaves memory.

A change the store refuses (disk full) is not lost: it is kept in memory, in order,
with every change after it, and stored by a retry every ``STORE_RETRY_S`` until the
store takes them (a late write never moves a command back to an older state). The
bus and the waiters are told at once, as when the write succeeds; the log says it
once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import msgspec

from arete.payloads import CommandId, Reply
from maestro.commands import records
from maestro.commands.deadlines import Deadlines
from maestro.commands.lifecycle import (
    FINAL_STATES,
    DeadlinePassed,
    Event,
    Replied,
    Transition,
    deadline_of,
    settle,
)
from maestro.commands.records import CommandRecord
from maestro.diskstate import Throttle
from maestro.errors import StoreError
from maestro.events import EventBus
from maestro.store.core import Store

log = logging.getLogger("arete.maestro.commands")

IGNORE_REASONS: Final = ("no_id", "unknown", "wrong_agent", "no_change")
STORE_RETRY_S: Final = 1.0
_MAX_ID_CHARS: Final = 128


@dataclass(eq=False)
class OpenCommand:
    """A command that is not final yet, as this service last saw it."""

    record: CommandRecord
    done: asyncio.Future[CommandRecord]  # resolved with the final record
    delivery: asyncio.Task[None] | None = None  # the publish, while it runs


class OpenCommands:
    """Call every method on the event loop."""

    def __init__(
        self, store: Store, events: EventBus, *, grace_s: float, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.events = events
        self.grace_s = grace_s
        self.clock = clock
        self._open: dict[str, OpenCommand] = {}
        self._deadlines = Deadlines()
        self._deadline_moved = asyncio.Event()
        self.finished_total: dict[str, int] = {state.value: 0 for state in FINAL_STATES}
        self.replies_ignored_total: dict[str, int] = dict.fromkeys(IGNORE_REASONS, 0)
        self.store_errors_total = 0
        # Changes the store refused, in order, kept until it takes them (disk full).
        self.unstored: deque[tuple[CommandRecord, str]] = deque()
        self.store_failing: str | None = None
        self._store_log = Throttle()
        self._retry: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    def get(self, command_id: str) -> OpenCommand | None:
        return self._open.get(command_id)

    def track(self, record: CommandRecord) -> OpenCommand:
        entry = OpenCommand(record, asyncio.get_running_loop().create_future())
        self._open[record.id] = entry
        self._move_deadline(record)
        return entry

    # -- replies --------------------------------------------------------------------------
    def on_reply(
        self, agent_id: str, reply: Reply, correlation: bytes | None, now: float | None
    ) -> bool:
        command_id = reply.id or _id_from_correlation(correlation)
        if command_id is None:
            return self._ignore("no_id", agent_id, None)
        entry = self._open.get(command_id)
        if entry is None:
            return self._ignore("unknown", agent_id, command_id)
        if entry.record.agent != agent_id:
            log.warning(
                "reply from another agent than the command's",
                extra={"kv": {"command_id": command_id, "agent_id": agent_id}},
            )
            return self._ignore("wrong_agent", agent_id, command_id)
        result = reply.result if reply.state.is_final else None
        if not self.advance(command_id, Replied(reply.state, reply.error), result, now):
            return self._ignore("no_change", agent_id, command_id)
        return True

    def _ignore(self, reason: str, agent_id: str, command_id: str | None) -> bool:
        self.replies_ignored_total[reason] += 1
        log.debug(
            "reply ignored",
            extra={"kv": {"reason": reason, "agent_id": agent_id, "command_id": command_id}},
        )
        return False

    # -- deadlines ------------------------------------------------------------------------
    def time_out_due(self, now: float) -> None:
        for command_id in self._deadlines.pop_due(now):
            self.advance(command_id, DeadlinePassed(), now=now)

    async def run_timeouts(self) -> None:
        """Time out each open command at its deadline (sleeps until the next one)."""
        while True:
            self.time_out_due(self.clock())
            self._deadline_moved.clear()
            next_due = self._deadlines.next_due()
            delay = None if next_due is None else max(0.0, next_due - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._deadline_moved.wait()

    def _move_deadline(self, record: CommandRecord) -> None:
        when = deadline_of(
            expires_at=record.expires_at,
            timeout_s=record.timeout_s,
            grace_s=self.grace_s,
            accepted_at=record.accepted_at,
        )
        if self._deadlines.set(record.id, when):
            self._deadline_moved.set()

    # -- state changes --------------------------------------------------------------------
    def advance(
        self, command_id: str, event: Event, result: Any = None, now: float | None = None
    ) -> bool:
        """Apply ``event`` to an open command; False when it changes nothing."""
        entry = self._open.get(command_id)
        if entry is None:
            return False
        changes = settle(entry.record.state, event)
        at = self.clock() if now is None else now
        for change in changes:
            self._apply(entry, change, at, result if change.state.is_final else None)
        return bool(changes)

    def _apply(self, entry: OpenCommand, change: Transition, now: float, result: Any) -> None:
        record = entry.record.advanced(change, now, result)
        entry.record = record
        if record.is_final:
            self._deadlines.discard(record.id)
            if entry.delivery is not None and not entry.delivery.done():
                entry.delivery.cancel()
        else:
            self._move_deadline(record)
        loop = asyncio.get_running_loop()
        if self.unstored:  # earlier changes wait for the store: this one goes behind them
            self.unstored.append((record, change.detail))
            self._told(entry, record)
            return
        try:
            stored = self.store.submit_write(
                partial(records.update, record=record, detail=change.detail)
            )
        except StoreError as exc:  # the store is closed (shutdown)
            stored = Future()
            stored.set_exception(exc)
        stored.add_done_callback(
            lambda done: _call_soon(loop, self._after_store, entry, record, change.detail, done)
        )

    def _after_store(
        self, entry: OpenCommand, record: CommandRecord, detail: str, stored: Future[None]
    ) -> None:
        error = stored.exception()
        if error is not None:
            self.store_errors_total += 1
            self.unstored.append((record, detail))
            self._store_failed(error)
            if self._retry is None or self._retry.done():
                self._retry = asyncio.get_running_loop().create_task(
                    self._store_later(), name="commands-store-retry"
                )
        self._told(entry, record)

    def _store_failed(self, error: BaseException) -> None:
        self.store_failing = str(error)
        if self._store_log.ready(self.clock()):
            kv = {
                "error": str(error),
                "changes": len(self.unstored),
                "repeats": self._store_log.suppressed,
            }
            log.error(
                "command states not stored; kept in memory and retried until stored",
                extra={"kv": kv},
            )

    async def _store_later(self) -> None:
        """Store the refused changes, in order, until the store takes them all."""
        while self.unstored:
            await asyncio.sleep(STORE_RETRY_S)
            batch = list(self.unstored)
            try:
                await self.store.write(partial(_store_late, changes=batch))
            except StoreError as exc:
                self._store_failed(exc)
                continue
            for _ in batch:
                self.unstored.popleft()
        self.store_failing = None
        self._store_log.reset()
        log.warning("command states stored again after a store failure")

    def _told(self, entry: OpenCommand, record: CommandRecord) -> None:
        """The change is decided: tell the bus and, once final, the waiters."""
        kv = {"command_id": record.id, "agent_id": record.agent, "state": record.state.value}
        self.events.publish("command", record.updated_at, record.to_dict())
        if not record.is_final:
            return
        self.finished_total[record.state.value] += 1
        if record.error_code is not None:
            kv["code"] = record.error_code
        log.info("command finished", extra={"kv": kv})
        if not entry.done.done():
            entry.done.set_result(record)
        if self._open.get(record.id) is entry:
            del self._open[record.id]


def _store_late(conn: sqlite3.Connection, changes: list[tuple[CommandRecord, str]]) -> None:
    """Store changes the store refused before: every event, and each command's state
    unless a newer one is stored already (changes that got through meanwhile)."""
    for record, detail in changes:
        row = conn.execute("SELECT updated_at FROM commands WHERE id = ?", (record.id,)).fetchone()
        if row is None:  # purged meanwhile: nothing to bring up to date
            continue
        if row[0] is not None and float(row[0]) > record.updated_at:
            records.add_event(conn, record.id, record.updated_at, record.state, detail)
        else:
            records.update(conn, record=record, detail=detail)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
        loop.call_soon_threadsafe(fn, *args)


def _id_from_correlation(correlation: bytes | None) -> str | None:
    """Our correlation data is the command id; a reply without an id still carries it."""
    if not correlation or len(correlation) > _MAX_ID_CHARS:
        return None
    try:
        return msgspec.convert(correlation.decode("ascii"), CommandId)
    except (UnicodeDecodeError, msgspec.ValidationError):
        return None
