"""The maestro's own data disk fills up: no page is lost, none is sent twice, and the
operator is told (an alert paged once, a gauge, one log line a minute, no traceback spam).

The maestro's database lives on a real 20 MB tmpfs that the test fills with a file;
a real agent goes offline (kill -9) while the disk is full and comes back; pages go to
the local Telegram and Discord servers.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from arete.payloads import MaestroState, decode_maestro_status
from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import TELEGRAM_TOKEN, FakeDiscord, FakeTelegram, Reply
from tests.fixtures.faults import SmallDisk
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for

CHAT = 4242
SELF = "maestro:main"


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


def page(message: dict[str, Any]) -> tuple[str, str]:
    """(subject, kind) of one delivered message, e.g. ("a1", "firing")."""
    text = json.dumps(message).lower()
    subject = SELF if SELF in text else "a1"
    return subject, "resolved" if "resolved" in text else "firing"


def pages(telegram: FakeTelegram, discord: FakeDiscord) -> Counter[tuple[str, str, str]]:
    seen: Counter[tuple[str, str, str]] = Counter()
    for message in telegram.sent(CHAT):
        seen[("telegram", *page(message))] += 1
    for message in discord.delivered():
        seen[("discord", *page(message))] += 1
    return seen


def one_each(*wanted: tuple[str, str]) -> Counter[tuple[str, str, str]]:
    return Counter({(channel, *item): 1 for channel in ("telegram", "discord") for item in wanted})


def presence(peer: MqttProbe) -> list[bool]:
    """``disk_full`` of each online presence payload the peer saw on maestro/main."""
    seen = [decode_maestro_status(m.payload) for m in peer.messages if m.payload]
    return [status.disk_full for status in seen if status.state is MaestroState.ONLINE]


def stored(m: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(rule, agent, phase, told) of every alert and (channel, state) of every outbox row."""

    def read(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        alerts = conn.execute("SELECT rule, agent, phase, told FROM alerts ORDER BY rule")
        rows = conn.execute("SELECT channel, state FROM notify_outbox ORDER BY id")
        return [tuple(a) for a in alerts.fetchall()], [tuple(r) for r in rows.fetchall()]

    result: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] = m.store.read_now(read)
    return result


def test_a_full_maestro_disk_pages_once_loses_no_change_and_says_so_once_a_minute(  # noqa: PLR0917 - fixtures
    broker: Broker,
    small_disk: Callable[..., SmallDisk],
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    reliability: Reliability,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    peer = mqtt("viewer", broker.viewer_password)
    peer.subscribe(broker.topics.maestro("main"))
    disk = small_disk("20m", name="maestro-data")
    maestro = maestro_thread(
        db_file=disk.path / "main.db",
        notify=notify_to(fake_telegram, fake_discord),
        alerts={
            "group_wait_s": 0.3,
            "builtin": {
                "agent_offline": {"clear_for_s": 1},
                "agent_critical": {"enabled": False},
                "maestro_disk_full": {"clear_for_s": 2},
            },
        },
    )
    config = broker.add_agent("a1")
    agent = start_agent("a1", config=config)
    maestro.wait_state("a1", "online", timeout=15)
    assert maestro.sync(lambda m: m.disk.full) is False

    disk.fill(leave=0)
    filled = time.monotonic()
    wait_for(lambda: maestro.sync(lambda m: m.disk.full), 10, "the maestro sees its disk full")
    detection_s = time.monotonic() - filled
    agent.kill9()  # an outage while nothing can be written
    maestro.wait_state("a1", "offline", timeout=15)
    wait_for(
        lambda: pages(fake_telegram, fake_discord) == one_each((SELF, "firing"), ("a1", "firing")),
        20,
        "the disk-full page and the offline page, while the disk is full",
    )
    assert disk.free_bytes() < 1024 * 1024, "the pages went out with the disk still full"
    unstored = maestro.sync(lambda m: m.alerts.effects.unstored)
    assert unstored > 0, "the alert changes are waiting in memory, not stored"
    metrics = maestro.sync(lambda m: {f.name: f for f in m.extra_metrics()})
    assert metrics["arete_maestro_disk_full"].samples[0].value == 1
    wait_for(lambda: presence(peer) == [False, True], 5, "maestro/main says its disk is full")

    agent = start_agent("a1", config=config)  # back while the disk is still full
    maestro.wait_state("a1", "online", timeout=15)
    wait_for(
        lambda: (
            pages(fake_telegram, fake_discord)[("discord", "a1", "resolved")] == 1
            and pages(fake_telegram, fake_discord)[("telegram", "a1", "resolved")] == 1
        ),
        20,
        "the resolved page",
    )
    time.sleep(3.0)  # retries of the store go on meanwhile; nothing may be sent again
    full_s = time.monotonic() - filled

    disk.free()
    wait_for(
        lambda: maestro.sync(
            lambda m: (
                not m.disk.full
                and m.alerts.effects.unstored == 0
                and m.notifier.outbox.held_count() == 0
                and not any(m.notifier.dispatcher.unmarked.values())
            )
        ),
        30,
        "everything decided is stored once room comes back",
    )
    expected = one_each((SELF, "firing"), ("a1", "firing"), ("a1", "resolved"), (SELF, "resolved"))
    wait_for(lambda: pages(fake_telegram, fake_discord) == expected, 20, "the disk-full resolved")
    assert presence(peer) == [False, True, False], "maestro/main says the disk has room again"
    time.sleep(2.0)
    sent = pages(fake_telegram, fake_discord)
    assert sent == expected, "each page exactly once"

    # Every decided change is in the database: the incidents and their pages, all sent.
    alerts, rows = maestro.sync(stored)
    assert ("agent_offline", "a1", "resolved", "resolved") in alerts
    assert ("maestro_disk_full", SELF, "resolved", "resolved") in alerts
    assert [state for _, state in rows] == ["sent"] * 8, rows

    # Told once a minute, not a traceback twice a second.
    records = [r for r in caplog.records if r.name.startswith(("arete", "maestro"))]
    full_lines = [r for r in records if r.getMessage().startswith("maestro data disk is full")]
    assert 1 <= len(full_lines) <= int(full_s // 60) + 1
    tracebacks = [r for r in records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) <= 6 * (int(full_s // 60) + 1), [r.getMessage() for r in errors]

    reliability.record(
        "maestro data disk full (20 MB tmpfs filled), agent kill -9 and back while full",
        detection_s=detection_s,
        lost=0,
        duplicates=sum(count - 1 for count in sent.values()),
        pages_expected=sum(expected.values()),
        pages_sent=sum(sent.values()),
        notes="offline + disk-full pages sent from memory while full; resolved once each; "
        f"{len(full_lines)} disk-full log line(s) in {full_s:.0f} s full",
    )


def test_a_page_sent_while_its_sent_mark_cannot_be_stored_is_never_sent_again(  # noqa: PLR0917 - fixtures
    broker: Broker,
    small_disk: Callable[..., SmallDisk],
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    reliability: Reliability,
) -> None:
    disk = small_disk("20m", name="maestro-data")
    maestro = maestro_thread(
        db_file=disk.path / "main.db",
        notify=notify_to(fake_telegram, fake_discord),
        alerts={
            "group_wait_s": 0.3,
            "builtin": {
                "agent_offline": {"clear_for_s": 1},
                "agent_critical": {"enabled": False},
                "maestro_disk_full": {"clear_for_s": 2},
            },
        },
    )
    config = broker.add_agent("a1")
    agent = start_agent("a1", config=config)
    maestro.wait_state("a1", "online", timeout=15)
    # The first attempt on each channel is asked to wait 3 s: the row is stored (the disk
    # has room) and pending when the disk fills; its 2xx then comes with the disk full.
    fake_telegram.script("sendMessage", Reply.telegram_retry_after(3))
    fake_discord.script("execute", Reply.discord_retry_after(3.0))
    agent.kill9()
    wait_for(
        lambda: bool(fake_telegram.calls("sendMessage") and fake_discord.calls("execute")),
        20,
        "the first, refused attempts",
    )
    disk.fill(leave=0)
    filled = time.monotonic()
    wait_for(
        lambda: maestro.sync(lambda m: sum(map(len, m.notifier.dispatcher.unmarked.values()))) == 2,
        15,
        "both pages sent, their sent marks refused by the full disk and kept in memory",
    )
    assert pages(fake_telegram, fake_discord)[("telegram", "a1", "firing")] == 1
    time.sleep(4.0)  # several delivery rounds with the marks unstored: nothing sent again
    while_full = pages(fake_telegram, fake_discord)
    assert while_full[("telegram", "a1", "firing")] == 1
    assert while_full[("discord", "a1", "firing")] == 1

    disk.free()
    wait_for(
        lambda: maestro.sync(
            lambda m: not m.disk.full and not any(m.notifier.dispatcher.unmarked.values())
        ),
        20,
        "the marks stored once room comes back",
    )
    agent = start_agent("a1", config=config)
    maestro.wait_state("a1", "online", timeout=15)
    expected = one_each(("a1", "firing"), ("a1", "resolved"), (SELF, "firing"), (SELF, "resolved"))
    wait_for(lambda: pages(fake_telegram, fake_discord) == expected, 30, "every page once")
    time.sleep(2.0)
    sent = pages(fake_telegram, fake_discord)
    assert sent == expected
    _, rows = maestro.sync(stored)
    assert [state for _, state in rows] == ["sent"] * 8, rows
    reliability.record(
        "maestro data disk full between a page's send and its sent mark",
        detection_s=None,
        lost=0,
        duplicates=sum(count - 1 for count in sent.values()),
        pages_expected=sum(expected.values()),
        pages_sent=sum(sent.values()),
        notes=f"sent marks kept in memory {time.monotonic() - filled:.0f} s, stored after "
        "freeing; the page was not sent again (it was sent 3 times before)",
    )


def test_a_maestro_started_on_a_full_disk_runs_pages_and_catches_up(  # noqa: PLR0917 - fixtures
    broker: Broker,
    small_disk: Callable[..., SmallDisk],
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    reliability: Reliability,
) -> None:
    disk = small_disk("20m", name="maestro-data")
    options: dict[str, Any] = {
        "db_file": disk.path / "main.db",
        "notify": notify_to(fake_telegram, fake_discord),
        "alerts": {
            "group_wait_s": 0.3,
            "builtin": {
                "agent_offline": {"clear_for_s": 1},
                "agent_critical": {"enabled": False},
                "maestro_disk_full": {"clear_for_s": 2},
            },
        },
    }
    first = maestro_thread(**options)
    config = broker.add_agent("a1")
    agent = start_agent("a1", config=config)
    first.wait_state("a1", "online", timeout=15)
    first.stop()
    disk.fill(leave=0)
    began = time.monotonic()
    maestro = maestro_thread(**options)  # a restart (or a reboot) with the disk still full
    started_s = time.monotonic() - began
    maestro.wait_state("a1", "online", timeout=15)
    wait_for(lambda: maestro.sync(lambda m: m.disk.full), 10, "the disk seen full")
    agent.kill9()
    wait_for(
        lambda: pages(fake_telegram, fake_discord) == one_each((SELF, "firing"), ("a1", "firing")),
        20,
        "the disk-full and offline pages from a maestro started on a full disk",
    )
    disk.free()
    agent = start_agent("a1", config=config)
    expected = one_each((SELF, "firing"), ("a1", "firing"), ("a1", "resolved"), (SELF, "resolved"))
    wait_for(lambda: pages(fake_telegram, fake_discord) == expected, 30, "every page once")
    wait_for(
        lambda: maestro.sync(lambda m: m.alerts.effects.unstored == 0),
        10,
        "every change stored",
    )
    time.sleep(2.0)
    sent = pages(fake_telegram, fake_discord)
    assert sent == expected
    alerts, rows = maestro.sync(stored)
    assert ("agent_offline", "a1", "resolved", "resolved") in alerts
    assert [state for _, state in rows] == ["sent"] * 8, rows
    reliability.record(
        "maestro restarted with its data disk full, agent kill -9 while full",
        detection_s=None,
        lost=0,
        duplicates=sum(count - 1 for count in sent.values()),
        pages_expected=sum(expected.values()),
        pages_sent=sum(sent.values()),
        notes=f"started in {started_s:.1f} s on the full disk (the 1 MiB reserve given up"
        " so SQLite can open); each page once",
    )
