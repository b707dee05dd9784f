"""Alerts end to end: real agents, a real maestro, notifications to local chat servers."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from arete.payloads import decode_agent_alerts
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import TELEGRAM_TOKEN, FakeDiscord, FakeTelegram
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for

CHAT = 4242


def notify_to(telegram: FakeTelegram, discord: FakeDiscord) -> dict[str, Any]:
    return {
        "telegram": {
            "token": TELEGRAM_TOKEN,
            "chat_ids": [CHAT],
            "base_url": telegram.base_url,
            "callbacks": False,
        },
        "discord": {"webhook_url": discord.webhook_url},
        "retry_min_s": 0.2,
        "poll_s": 0.2,
    }


def phases(maestro: MaestroThread, agent_id: str) -> dict[str, str]:
    alerts = maestro.call(maestro.app.alerts.list_alerts(agent=agent_id))
    return {a.rule: str(a.phase) for a in alerts}


def test_a_silent_agent_pages_once_on_each_channel_and_resolves_when_it_resumes(  # noqa: PLR0917 - fixtures
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
) -> None:
    phone = mqtt("viewer", broker.viewer_password)
    phone.subscribe(broker.topics.alerts("a1"))
    maestro = maestro_thread(
        notify=notify_to(fake_telegram, fake_discord),
        alerts={"group_wait_s": 0.3, "builtin": {"agent_critical": {"clear_for_s": 1}}},
    )
    agent = start_agent("a1")
    maestro.wait_state("a1", "online", timeout=10)
    agent.signal(signal.SIGSTOP)
    try:
        maestro.wait_state("a1", "critical", timeout=8)
        wait_for(lambda: phases(maestro, "a1").get("agent_critical") == "firing", 5, "firing")
        wait_for(
            lambda: bool(fake_telegram.sent(CHAT)) and bool(fake_discord.delivered()), 10, "paged"
        )
        retained = [decode_agent_alerts(m.payload) for m in phone.messages if m.payload]
        assert any(
            [a.rule for a in snapshot.alerts] == ["agent_critical"] for snapshot in retained
        ), "the phone app sees the firing alert on alerts/a1"
    finally:
        agent.signal(signal.SIGCONT)
    maestro.wait_state("a1", "online", timeout=5)
    wait_for(lambda: phases(maestro, "a1").get("agent_critical") == "resolved", 10, "resolved")
    wait_for(lambda: len(fake_discord.delivered()) == 2, 10, "the resolved message")
    assert "resolved" in str(fake_discord.delivered()[-1]).lower()
    # Each channel is delivered on its own: Telegram's may land a moment after Discord's.
    wait_for(lambda: len(fake_telegram.sent(CHAT)) >= 2, 10, "the resolved message on Telegram")
    time.sleep(1.0)  # and no third
    assert len(fake_telegram.sent(CHAT)) == 2


def test_a_flapping_agent_yields_at_most_one_notification_per_channel(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
) -> None:
    maestro = maestro_thread(notify=notify_to(fake_telegram, fake_discord))
    config = broker.add_agent("a1")
    began = time.monotonic()
    for _ in range(10):  # up and down ten times within a minute
        agent = start_agent("a1", config=config)
        maestro.wait_state("a1", "online", timeout=10)
        agent.kill9()
        maestro.wait_state("a1", "offline", timeout=5)
    assert time.monotonic() - began < 60
    time.sleep(2.0)  # anything queued would be out by now
    assert len(fake_telegram.sent(CHAT)) <= 1
    assert len(fake_discord.delivered()) <= 1
    assert len(fake_discord.delivered()) == 1, "the first outage did page"
