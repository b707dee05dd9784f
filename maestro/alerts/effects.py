"""Performing what the engine decided: store, notify, publish, tell the event bus.

* Alert and silence changes, the notifications they cause (outbox rows) and audit
  entries of one evaluation are stored in one transaction, in order, on the store's
  writer thread; a queue keeps the event loop free.
* What was decided is never thrown away: a job the store refuses (disk full) stays at
  the head of the queue and is retried with backoff until it is stored; the jobs behind
  it wait, so the order holds. Its notifications are handed to the outbox's memory path
  at once, so a page goes out while the disk is full (see
  :class:`~maestro.notify.outbox.Memo`). Logs say so once a minute.
* The retained ``alerts/<id>`` snapshot of each agent that changed is republished from
  its own task, coalesced per agent: a broker outage delays snapshots, never pages.
* The event bus hears about every change at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from arete.errors import AreteError
from arete.payloads import AgentAlerts, encode
from arete.topics import Topics
from maestro.alerts import tables
from maestro.alerts.model import Action, AlertChanged, Notify, Publish, SilenceChanged
from maestro.diskstate import Throttle
from maestro.errors import MaestroError, StoreError
from maestro.events import EventBus
from maestro.notify.message import Notice
from maestro.notify.outbox import Memo, Outbox
from maestro.ports import Publisher
from maestro.store.core import Store

log = logging.getLogger(__name__)

PUBLISH_RETRY_S: Final = 1.0
STORE_RETRY_MIN_S: Final = 0.5
STORE_RETRY_MAX_S: Final = 5.0
FLUSH_WAIT_S: Final = 2.0  # readers wait this long for queued changes, then read anyway
OWN_DISK_RULE: Final = "maestro_disk_full"  # paged by its own replica, leader or not
SELF_PREFIX: Final = "maestro:"  # a replica's own alerts (rules.MAESTRO_SCOPE): no alerts/ topic


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str  # "alert.ack", "alert.silence", "alert.unsilence"
    target: str
    detail: dict[str, Any]


@dataclass(slots=True)
class Job:
    """What one evaluation must store, in one transaction."""

    now: float
    actions: list[Action]
    audits: list[AuditEntry] = field(default_factory=list)
    notify: bool = True  # whether this replica queues the notifications
    done: asyncio.Future[None] | None = None
    memos: dict[int, Memo] = field(default_factory=dict)  # index of a Notify -> its memo
    outgoing: dict[int, Notice] = field(default_factory=dict)  # index of a Notify -> sent


def never_fired(change: AlertChanged) -> bool:
    """A pending incident whose condition cleared before ``for_s``: it is dropped, not
    kept as a "resolved" one (a busy box would list dozens of alerts that never fired)."""
    alert = change.alert
    return change.change == "resolved" and alert.fired_at is None


def _own_disk_only(notice: Notice) -> Notice | None:
    """What a replica that does not send notifications (not the leader) still sends: its
    own ``maestro_disk_full``, which no other replica knows of."""
    items = [item for item in notice.items if item.rule == OWN_DISK_RULE]
    if not items or not notice.agent.startswith(SELF_PREFIX):
        return None
    return Notice(agent=notice.agent, ts=notice.ts, items=items)


class Effects:
    """Counters: ``notifications_queued``, ``store_errors``, ``publish_errors``; and
    :attr:`failing` (the store's error while a job waits to be stored, else None),
    :attr:`unstored` (jobs decided but not stored yet)."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        topics: Topics,
        events: EventBus,
        *,
        outbox: Outbox | None,
        snapshot: Callable[[str], AgentAlerts],
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._topics = topics
        self._events = events
        self.outbox = outbox
        self._snapshot = snapshot
        self._jobs: asyncio.Queue[Job] = asyncio.Queue()
        self._waiting: deque[Job] = deque()  # submitted, not stored yet, in order
        self._dirty: set[str] = set()
        self._removed: set[str] = set()  # removed agents: their snapshot is cleared
        self._dirty_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.notifications_queued = 0
        self.store_errors = 0
        self.publish_errors = 0
        self.failing: str | None = None
        self._throttle = Throttle()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._store_loop(), name="alerts-store"),
            asyncio.create_task(self._publish_loop(), name="alerts-publish"),
        ]

    async def aclose(self, drain_s: float) -> None:
        """Store what is queued (for up to ``drain_s``), then stop."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._jobs.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.unstored:
            log.error(
                "stopping with alert changes not stored (the disk stayed full)",
                extra={"kv": {"jobs": self.unstored, "error": self.failing}},
            )

    def submit(self, job: Job) -> None:
        """Tell the bus and the publisher now; queue the job for the store."""
        for action in job.actions:
            data: dict[str, Any]
            if isinstance(action, AlertChanged):
                data = {"change": str(action.change), "alert": action.alert.to_json()}
                self._events.publish("alert", job.now, data)
            elif isinstance(action, SilenceChanged):
                data = {"change": f"silence_{action.change}", "silence": action.silence.to_json()}
                self._events.publish("alert", job.now, data)
            elif isinstance(action, Publish):
                self._removed.discard(action.agent)  # known again (re-added)
                self._dirty.add(action.agent)
                self._dirty_event.set()
        for index, action in enumerate(job.actions):
            if isinstance(action, Notify):
                notice = action.notice if job.notify else _own_disk_only(action.notice)
                if notice is not None:
                    job.outgoing[index] = notice
                    self.notifications_queued += 1
        if self.outbox is not None and self.outbox.channels:
            job.memos = {index: Memo(notice, job.now) for index, notice in job.outgoing.items()}
            if self.failing is not None:  # it will wait behind the refused ones: page now
                self.outbox.hold(job.memos.values())
        self._waiting.append(job)
        self._jobs.put_nowait(job)

    def forget(self, agent: str) -> None:
        """The agent was removed: clear its retained snapshot (an empty retained message)
        instead of publishing one, should it still be due."""
        if agent.startswith(SELF_PREFIX):
            return
        self._removed.add(agent)
        self._dirty.add(agent)
        self._dirty_event.set()

    @property
    def unstored(self) -> int:
        """Jobs decided but not stored yet (queued, or waiting for the disk)."""
        return len(self._waiting)

    async def submit_and_wait(self, job: Job) -> None:
        """:meth:`submit`, then wait until the job is stored (raises if it was not)."""
        if self._tasks:
            job.done = asyncio.get_running_loop().create_future()
        self.submit(job)
        if job.done is not None:
            await job.done

    async def flushed(self) -> None:
        """Until everything submitted so far is stored, or ``FLUSH_WAIT_S`` passed (the
        disk is full: readers then see what is stored; memory has the rest)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_WAIT_S):
                    await self._jobs.join()

    async def _store_loop(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await self._store_until_stored(job)
            finally:
                self._jobs.task_done()

    async def _store_until_stored(self, job: Job) -> None:
        """Store ``job``; on failure keep it (and its pages, in memory) and retry."""
        memos = list(job.memos.values())
        outbox = self.outbox
        delay = STORE_RETRY_MIN_S
        while True:
            if outbox is not None and memos:
                await outbox.freeze(memos)  # what went out from memory is final now
            try:
                await self._store.write(partial(self._store_job, job=job))
            except (MaestroError, sqlite3.Error) as exc:
                self._failed(job, exc)
                if outbox is not None:
                    # This job's pages and those of every job waiting behind it go out
                    # from memory meanwhile, in order.
                    for waiting in self._waiting:
                        outbox.hold(waiting.memos.values())
                    outbox.thaw(memos)
                await asyncio.sleep(delay)
                delay = min(STORE_RETRY_MAX_S, delay * 2)
                continue
            break
        if self.failing is not None:
            log.warning(
                "alert changes stored again after a store failure",
                extra={"kv": {"queued": self._jobs.qsize()}},
            )
            self.failing = None
            self._throttle.reset()
        self._waiting.remove(job)
        if job.done is not None and not job.done.done():
            job.done.set_result(None)
        if outbox is not None and memos:
            outbox.release(memos)  # and wakes the channels: new rows to deliver

    def _failed(self, job: Job, exc: BaseException) -> None:
        self.store_errors += 1
        self.failing = str(exc)
        if self._throttle.ready(time.monotonic()):
            kv = {
                "error": str(exc),
                "queued": self._jobs.qsize() + 1,
                "pages_held": len(job.memos),
                "repeats": self._throttle.suppressed,
            }
            log.error(
                "alert changes could not be stored; kept in memory and retried until stored",
                extra={"kv": kv},
            )
        if job.done is not None and not job.done.done():
            # The change is decided and in force; only its storing is late.
            job.done.set_exception(
                StoreError(f"the change is in force but not stored yet (retrying): {exc}")
            )

    def _store_job(self, conn: sqlite3.Connection, *, job: Job) -> None:
        """Runs on the writer thread, inside one transaction."""
        for index, action in enumerate(job.actions):
            if isinstance(action, AlertChanged) and never_fired(action):
                tables.forget_alert(conn, action.alert.id)
            elif isinstance(action, AlertChanged):
                tables.save_alert(conn, action.alert)
            elif isinstance(action, SilenceChanged):
                tables.save_silence(conn, action.silence)
            elif index in job.outgoing and self.outbox is not None:
                self.outbox.enqueue(conn, job.outgoing[index], job.now, job.memos.get(index))
        for entry in job.audits:
            tables.audit(
                conn,
                ts=job.now,
                actor=entry.actor,
                action=entry.action,
                target=entry.target,
                detail=entry.detail,
            )

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            while self._dirty:
                agent = min(self._dirty)
                self._dirty.discard(agent)
                await self._publish(agent)

    async def _publish(self, agent: str) -> None:
        if agent.startswith(SELF_PREFIX):  # a replica's own alert: the API and pages show it
            return
        try:
            topic = self._topics.alerts(agent)
        except AreteError as exc:
            kv = {"agent_id": agent, "error": str(exc)}
            log.warning("no alerts topic for this agent id", extra={"kv": kv})
            return
        try:
            payload = b"" if agent in self._removed else encode(self._snapshot(agent))
            await self._publisher.publish(topic, payload, qos=1, retain=True)
        except MaestroError as exc:
            self.publish_errors += 1
            log.warning(
                "alerts snapshot not published; will retry",
                extra={"kv": {"agent_id": agent, "error": str(exc)}},
            )
            self._dirty.add(agent)
            await asyncio.sleep(PUBLISH_RETRY_S)
