"""A full disk loses no page and repeats none: alert changes retried in order, pages held
in memory and sent while the store refuses them, "sent" marks remembered until stored.

The store here is an in-memory SQLite behind the same ``read``/``write`` calls as the real
one, with a switch that makes every write fail the way a full disk does.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from arete.payloads import AlertPhase, AlertSeverity
from arete.topics import Topics
from maestro.alerts import ALERT_MIGRATIONS
from maestro.alerts.effects import Effects, Job
from maestro.alerts.model import AlertChanged, AlertRecord, Notify
from maestro.errors import StoreError
from maestro.events import EventBus
from maestro.notify import NOTIFY_MIGRATIONS
from maestro.notify import outbox as rows
from maestro.notify.channel import Outcome
from maestro.notify.dispatcher import Dispatcher
from maestro.notify.message import Notice, NoticeItem, NoticeKind, decode_notice
from maestro.notify.outbox import Outbox
from maestro.notify.ratelimit import RateLimit
from maestro.notify.settings import NotifySettings
from maestro.store.audit import AUDIT_MIGRATIONS
from maestro.store.db import migrate

T = TypeVar("T")
FULL = "store write failed: database or disk is full"


class FlakyStore:
    """``write`` fails like a full disk while ``full`` is set; ``read`` always works."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        for component, scripts in (
            ("audit", AUDIT_MIGRATIONS),
            ("alerts", ALERT_MIGRATIONS),
            ("notify", NOTIFY_MIGRATIONS),
        ):
            migrate(self.conn, component, scripts)
        self.full = False
        self.refused = 0

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await asyncio.sleep(0)
        if self.full:
            self.refused += 1
            raise StoreError(FULL)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await asyncio.sleep(0)
        return fn(self.conn)


class Recorder:
    """A channel that answers 2xx and remembers what it was sent."""

    def __init__(self, name: str = "chat") -> None:
        self._name = name
        self.sent: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def new_limit(self) -> RateLimit:
        return RateLimit(limit=1000, window_s=1.0)

    async def send(self, notice: Notice) -> Outcome:
        self.sent.append(f"{notice.agent}:{notice.items[0].kind}")
        return Outcome.sent()

    async def aclose(self) -> None:
        return None


class NoPublisher:
    async def publish(self, topic: str, payload: bytes, **options: Any) -> None:
        return None


def notice(agent: str, kind: NoticeKind) -> Notice:
    item = NoticeItem(
        alert_id=f"id-{agent}",
        rule="agent_offline",
        severity=AlertSeverity.CRITICAL,
        kind=kind,
        summary=f"{agent} is offline",
        since=1.0,
    )
    return Notice(agent=agent, ts=1.0, items=[item])


def alert(agent: str, phase: AlertPhase) -> AlertRecord:
    """An incident that fired at t=2 (a resolved one that never fired is no history)."""
    return AlertRecord(
        id=f"id-{agent}",
        rule="agent_offline",
        agent=agent,
        severity=AlertSeverity.CRITICAL,
        phase=phase,
        started_at=1.0,
        since=1.0,
        summary=f"{agent} is offline",
        fired_at=None if phase is AlertPhase.PENDING else 2.0,
    )


def build(store: FlakyStore) -> tuple[Effects, Outbox, Dispatcher, Recorder]:
    channel = Recorder()
    outbox = Outbox([channel.name])
    settings = NotifySettings(poll_s=0.02, retry_min_s=0.01, retry_max_s=0.05)
    dispatcher = Dispatcher(store, outbox, [channel], settings)  # type: ignore[arg-type]
    effects = Effects(
        store,  # type: ignore[arg-type]
        NoPublisher(),
        Topics("arete"),
        EventBus(),
        outbox=outbox,
        snapshot=lambda agent: None,  # type: ignore[arg-type,return-value]
    )
    return effects, outbox, dispatcher, channel


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(test())

    return wrapper


async def until(check: Callable[[], Any], within_s: float = 5.0) -> None:
    """Poll ``check`` (plain attributes of the objects under test: nothing to await)."""
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110 - polling plain state, there is no event
            await asyncio.sleep(0.01)


def outbox_states(store: FlakyStore) -> list[tuple[str, str]]:
    return [(decode_notice(r.body).agent, r.state) for r in rows.all_rows(store.conn)]


@run
async def test_a_page_decided_while_the_disk_is_full_is_sent_once_and_stored_as_sent() -> None:
    store = FlakyStore()
    effects, outbox, dispatcher, channel = build(store)
    effects.start()
    task = asyncio.create_task(dispatcher.run())
    try:
        store.full = True
        firing = Job(
            time.time(),
            [AlertChanged(alert("a1", AlertPhase.FIRING), "firing"),
             Notify(notice("a1", NoticeKind.FIRING))],
        )  # fmt: skip
        effects.submit(firing)
        await until(lambda: channel.sent == ["a1:firing"])  # sent while the disk is full
        assert "full" in (effects.failing or "")
        assert outbox.held_count() == 1
        await asyncio.sleep(0.3)  # retries go on; the page is not sent again
        assert channel.sent == ["a1:firing"]
        store.full = False
        await until(lambda: effects.failing is None and outbox.held_count() == 0)
        await effects.flushed()
        assert outbox_states(store) == [("a1", "sent")]
        stored = store.conn.execute("SELECT phase FROM alerts WHERE id = 'id-a1'").fetchone()
        assert stored == ("firing",)
        await asyncio.sleep(0.2)
        assert channel.sent == ["a1:firing"]  # the stored row is not delivered again
    finally:
        task.cancel()
        await effects.aclose(0.1)


@run
async def test_changes_decided_while_full_are_stored_in_order_and_pages_keep_their_order() -> None:
    store = FlakyStore()
    effects, _, dispatcher, channel = build(store)
    effects.start()
    store.full = True
    firing = AlertChanged(alert("a1", AlertPhase.FIRING), "firing")
    resolved = AlertChanged(alert("a1", AlertPhase.RESOLVED), "resolved")
    effects.submit(Job(time.time(), [firing, Notify(notice("a1", NoticeKind.FIRING))]))
    effects.submit(Job(time.time(), [resolved, Notify(notice("a1", NoticeKind.RESOLVED))]))
    task = asyncio.create_task(dispatcher.run())
    try:
        # Both pages go out from memory while the disk is full, firing first.
        await until(lambda: channel.sent == ["a1:firing", "a1:resolved"])
        await asyncio.sleep(0.2)
        assert channel.sent == ["a1:firing", "a1:resolved"]
        assert effects.unstored == 2
        store.full = False
        await until(lambda: effects.unstored == 0)
        assert outbox_states(store) == [("a1", "sent"), ("a1", "sent")]
        assert store.conn.execute("SELECT phase FROM alerts").fetchall() == [("resolved",)]
        await asyncio.sleep(0.2)
        assert channel.sent == ["a1:firing", "a1:resolved"]
    finally:
        task.cancel()
        await effects.aclose(0.1)


@run
async def test_a_sent_page_whose_mark_cannot_be_stored_is_never_sent_again() -> None:
    store = FlakyStore()
    _, outbox, dispatcher, channel = build(store)
    store.conn.execute("BEGIN")
    outbox.enqueue(store.conn, notice("a1", NoticeKind.FIRING), time.time())
    outbox.enqueue(store.conn, notice("a2", NoticeKind.FIRING), time.time())
    store.conn.execute("COMMIT")
    store.full = True  # the sends get their 2xx; the marks are refused
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: channel.sent == ["a1:firing", "a2:firing"])
        await asyncio.sleep(1.5)  # several delivery rounds and mark retries
        assert channel.sent == ["a1:firing", "a2:firing"]
        assert dispatcher.failing is not None
        assert outbox_states(store) == [("a1", "pending"), ("a2", "pending")]
        store.full = False
        await until(lambda: outbox_states(store) == [("a1", "sent"), ("a2", "sent")], within_s=5.0)
        assert dispatcher.failing is None
        assert channel.sent == ["a1:firing", "a2:firing"]
    finally:
        task.cancel()


@run
async def test_an_operator_change_refused_by_the_store_is_kept_and_stored_later() -> None:
    store = FlakyStore()
    effects, _, _, _ = build(store)
    effects.start()
    try:
        store.full = True
        with pytest.raises(StoreError, match="not stored yet"):
            await effects.submit_and_wait(
                Job(time.time(), [AlertChanged(alert("a1", AlertPhase.FIRING), "acked")])
            )
        store.full = False
        await until(lambda: effects.unstored == 0)
        assert store.conn.execute("SELECT id FROM alerts").fetchall() == [("id-a1",)]
    finally:
        await effects.aclose(0.1)


@run
async def test_a_follower_replica_still_pages_its_own_full_disk_and_nothing_else() -> None:
    store = FlakyStore()
    effects, _, dispatcher, channel = build(store)
    effects.start()
    task = asyncio.create_task(dispatcher.run())

    def item(rule: str) -> NoticeItem:
        return NoticeItem(
            alert_id=rule,
            rule=rule,
            severity=AlertSeverity.CRITICAL,
            kind=NoticeKind.FIRING,
            summary=rule,
            since=1.0,
        )

    own = Notice(
        agent="maestro:r2", ts=1.0, items=[item("broker_unreachable"), item("maestro_disk_full")]
    )
    try:
        store.full = True
        # notify=False: this replica is not the leader, which pages the rest.
        effects.submit(
            Job(time.time(), [Notify(own), Notify(notice("a1", NoticeKind.FIRING))], notify=False)
        )
        await until(lambda: channel.sent == ["maestro:r2:firing"])
        await asyncio.sleep(0.2)
        assert channel.sent == ["maestro:r2:firing"]
        store.full = False
        await until(lambda: effects.unstored == 0)
        bodies = [decode_notice(r.body) for r in rows.all_rows(store.conn)]
        assert [[i.rule for i in b.items] for b in bodies] == [["maestro_disk_full"]]
    finally:
        task.cancel()
        await effects.aclose(0.1)
