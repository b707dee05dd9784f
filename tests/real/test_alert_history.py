"""Alert history in a real store: incidents that never fired are not listed as resolved.

A busy box whose CPU crosses 90 % for a few seconds at a time makes ``cpu_high`` go
pending and clear over and over; none of those fired, so none is history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from arete.payloads import AlertPhase
from arete.topics import Topics
from maestro.alerts import ALERT_MIGRATIONS, AlertService, AlertSettings, RuleOverride, tables
from maestro.events import EventBus
from maestro.store.core import Store

TOPICS = Topics("history-test")


class NullPublisher:
    async def publish(self, topic: str, payload: bytes, **_: object) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = time.time() - 10_000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "maestro.db", {"alerts": ALERT_MIGRATIONS})
    try:
        yield opened
    finally:
        opened.close()


def service_for(store: Store, clock: Clock) -> AlertService:
    settings = AlertSettings(builtin={"cpu_high": RuleOverride(for_s=10.0, clear_for_s=0.0)})
    return AlertService(store, NullPublisher(), TOPICS, settings, EventBus(), clock=clock)


def test_fifty_pending_blips_leave_no_history_but_a_fired_alert_does(store: Store) -> None:
    clock = Clock()

    def sample(cpu: float) -> None:
        clock.now += 1
        service.tick({"a1": (clock.now, {"cpu": cpu, "mem": 10.0, "disk": 10.0})})

    service = service_for(store, clock)

    async def scenario() -> None:
        await service.start()
        service.observe_agent("a1", "online", clock.now)
        for _ in range(50):  # 3 s over 90 %, then a dip: pending, never firing
            for _ in range(3):
                sample(97.0)
            sample(20.0)
        listed = await service.list_alerts()
        assert listed == [], "pending-then-cleared alerts are not history"
        assert await service.list_alerts(phase="resolved") == []
        stored = await store.read(
            lambda conn: conn.execute("SELECT count(*) FROM alerts").fetchone()
        )
        assert stored == (0,), "nor are they kept in the store"

        for _ in range(12):  # over 90 % for longer than for_s: it fires
            sample(97.0)
        sample(20.0)  # clear_for_s is 0: resolved at once
        resolved = await service.list_alerts()
        assert [(a.rule, a.phase) for a in resolved] == [("cpu_high", AlertPhase.RESOLVED)]
        assert resolved[0].fired_at is not None
        await service.aclose()

    asyncio.run(scenario())


def test_never_fired_rows_of_an_older_store_are_not_listed(store: Store) -> None:
    clock = Clock()
    service = service_for(store, clock)

    async def scenario() -> None:
        await service.start()
        service.observe_agent("a1", "online", clock.now)
        for _ in range(3):
            clock.now += 1
            service.tick({"a1": (clock.now, {"cpu": 97.0})})
        pending = await service.list_alerts()
        assert [a.phase for a in pending] == [AlertPhase.PENDING], "pending ones are listed"
        # A store written before never-fired incidents were dropped kept them as resolved.
        old = pending[0]
        stale = replace(old, phase=AlertPhase.RESOLVED, resolved_at=clock.now)
        await store.write(lambda conn: tables.save_alert(conn, stale))
        assert await service.list_alerts() == []
        await service.aclose()

    asyncio.run(scenario())
