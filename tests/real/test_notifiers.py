"""Notifications delivered to local servers that speak the Telegram Bot API and the
Discord webhook API, from a real SQLite store: 429s and 5xx retried (exactly one
message), bad credentials failed for good, rate limits kept, the outbox surviving a
restart, the Telegram buttons acting on alerts, and the alert service around it all
(retained snapshots through a recording publisher; the lead covers MQTT end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from arete.payloads import AgentAlerts, AlertPhase, AlertSeverity, decode_agent_alerts
from arete.topics import Topics
from maestro.alerts import ALERT_MIGRATIONS, AlertService, AlertSettings, RuleOverride
from maestro.errors import AlertError
from maestro.events import EventBus
from maestro.notify import NOTIFY_MIGRATIONS, Notifiers, NotifySettings
from maestro.notify import outbox as rows
from maestro.notify.message import Notice, NoticeItem, NoticeKind
from maestro.notify.outbox import Outbox
from maestro.notify.settings import DiscordSettings, TelegramSettings
from maestro.store.audit import list_audit
from maestro.store.core import Store
from tests.fixtures.chat_servers import FakeDiscord, FakeTelegram, Reply

# PTB warns about its own RetryAfter.retry_after type change whenever a 429 arrives.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

CHAT = -1001
STRANGER_CHAT = -1002
TOPICS = Topics("notifiers-test")


# -- helpers -----------------------------------------------------------------------------
def open_store(path: Path) -> Store:
    return Store.open(path, {"alerts": ALERT_MIGRATIONS, "notify": NOTIFY_MIGRATIONS})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "maestro.db")
    try:
        yield opened
    finally:
        opened.close()


def settings_for(
    telegram: FakeTelegram | None = None,
    discord: FakeDiscord | None = None,
    *,
    token: str = FakeTelegram.token,
    webhook_url: str | None = None,
) -> NotifySettings:
    return NotifySettings(
        telegram=None
        if telegram is None
        else TelegramSettings(
            token=SecretStr(token), chat_ids=[CHAT], base_url=telegram.base_url, poll_timeout_s=1
        ),
        discord=None
        if discord is None
        else DiscordSettings(webhook_url=SecretStr(webhook_url or discord.webhook_url)),
        retry_min_s=0.2,
        retry_max_s=0.4,
        poll_s=0.1,
    )


def notice(agent: str = "a1", alert_id: str = "0123456789abcdef") -> Notice:
    item = NoticeItem(
        alert_id=alert_id,
        rule="agent_offline",
        severity=AlertSeverity.CRITICAL,
        kind=NoticeKind.FIRING,
        summary=f"{agent} is offline (connection lost)",
        since=time.time(),
    )
    return Notice(agent=agent, ts=time.time(), items=[item])


async def eventually(predicate: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def delivering(
    store: Store, settings: NotifySettings, actions: Any = None
) -> AsyncIterator[Notifiers]:
    notifiers = Notifiers.from_settings(store, settings)
    task = asyncio.create_task(notifiers.run(actions))
    try:
        yield notifiers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await notifiers.aclose()


async def queue(store: Store, notifiers: Notifiers, *notices: Notice) -> None:
    for one in notices:
        await store.write(partial(notifiers.outbox.enqueue, notice=one, now=time.time()))
    notifiers.outbox.wake()


async def outbox_states(store: Store) -> list[str]:
    return [row.state for row in await store.read(rows.all_rows)]


class RecordingPublisher:
    """Stands in for the MQTT link: keeps what would have been published."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        self.messages.append((topic, payload, qos, retain))

    def last(self, agent: str) -> AgentAlerts | None:
        mine = [m for m in self.messages if m[0] == TOPICS.alerts(agent)]
        if not mine:
            return None
        _topic, payload, qos, retain = mine[-1]
        assert (qos, retain) == (1, True), "alert snapshots are retained, QoS 1"
        return decode_agent_alerts(payload)

    def shows(self, *, alerts: int | None = None, silenced: bool | None = None) -> bool:
        """Whether a1's last snapshot has that many alerts / a silenced first alert."""
        last = self.last("a1")
        if last is None:
            return False
        if alerts is not None and len(last.alerts) != alerts:
            return False
        if silenced is not None:
            return bool(last.alerts) and (last.alerts[0].silenced_until is not None) == silenced
        return True


class FakeClock:
    """Alert time, kept in the past so the dispatcher finds its rows due at once."""

    def __init__(self) -> None:
        self.now = time.time() - 10_000

    def __call__(self) -> float:
        return self.now


def alert_service(
    store: Store, publisher: RecordingPublisher, clock: FakeClock, outbox: Outbox | None
) -> AlertService:
    settings = AlertSettings(
        group_wait_s=2.0,
        builtin={"agent_offline": RuleOverride(clear_for_s=0.0)},
    )
    return AlertService(
        store,
        publisher,
        TOPICS,
        settings,
        EventBus(),
        clock=clock,
        outbox=outbox,
    )


def advance(service: AlertService, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.now += 1
        service.tick()


# -- delivery ----------------------------------------------------------------------------
def test_telegram_429_then_200_delivers_the_message_exactly_once(
    store: Store, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.script("sendMessage", Reply.telegram_retry_after(1))

    async def scenario() -> tuple[dict[str, int], list[str]]:
        async with delivering(store, settings_for(fake_telegram)) as notifiers:
            await queue(store, notifiers, notice())
            await eventually(lambda: len(fake_telegram.sent()) == 1, "the message")
            await asyncio.sleep(0.5)  # a duplicate would show up now
            return notifiers.dispatcher.sent, await outbox_states(store)

    sent, states = asyncio.run(scenario())
    calls = fake_telegram.calls("sendMessage")
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0, "waited the retry_after Telegram asked for"
    assert states == ["sent"]
    assert sent == {f"telegram:{CHAT}": 1}
    body = fake_telegram.sent()[0]
    assert body["chat_id"] == CHAT
    assert "a1 is offline" in body["text"]


def test_discord_429_then_200_delivers_the_message_exactly_once(
    store: Store, fake_discord: FakeDiscord
) -> None:
    fake_discord.script("execute", Reply.discord_retry_after(1.0))

    async def scenario() -> list[str]:
        async with delivering(store, settings_for(discord=fake_discord)) as notifiers:
            await queue(store, notifiers, notice())
            await eventually(lambda: len(fake_discord.delivered()) == 1, "the message")
            await asyncio.sleep(0.5)
            return await outbox_states(store)

    states = asyncio.run(scenario())
    calls = fake_discord.calls("execute")
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0, "waited the retry_after Discord asked for"
    assert states == ["sent"]
    body = fake_discord.delivered()[0]
    assert body["allowed_mentions"] == {"parse": []}
    assert calls[1].query == {"wait": "true"}


def test_a_5xx_then_200_delivers_one_message_on_each_channel(
    store: Store, fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    fake_telegram.script("sendMessage", Reply.telegram_error(500, "Internal Server Error"))
    fake_discord.script("execute", Reply(502, {"message": "Bad Gateway"}))

    async def scenario() -> dict[str, int]:
        async with delivering(store, settings_for(fake_telegram, fake_discord)) as notifiers:
            await queue(store, notifiers, notice())
            await eventually(
                lambda: len(fake_telegram.sent()) == 1 and len(fake_discord.delivered()) == 1,
                "both messages",
            )
            await asyncio.sleep(0.5)
            return notifiers.dispatcher.retried

    retried = asyncio.run(scenario())
    assert [c.status for c in fake_telegram.calls("sendMessage")] == [500, 200]
    assert [c.status for c in fake_discord.calls("execute")] == [502, 200]
    assert retried == {f"telegram:{CHAT}": 1, "discord": 1}


def test_bad_credentials_fail_for_good_and_are_not_retried(
    store: Store,
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_token = "987654321:WRONG-token-of-some-other-bot-0000"
    unknown_webhook = fake_discord.webhook_url.replace("/webhooks/1", "/webhooks/9")
    settings = settings_for(
        fake_telegram, fake_discord, token=wrong_token, webhook_url=unknown_webhook
    )

    async def scenario() -> tuple[dict[str, int], list[str]]:
        async with delivering(store, settings) as notifiers:
            await queue(store, notifiers, notice())
            await eventually(
                lambda: sum(notifiers.dispatcher.failed.values()) == 2, "both failures"
            )
            await asyncio.sleep(1.0)  # long enough for a few retries, were there any
            return notifiers.dispatcher.failed, await outbox_states(store)

    failed, states = asyncio.run(scenario())
    assert [c.status for c in fake_telegram.calls("sendMessage")] == [401]
    assert [c.status for c in fake_discord.calls("execute")] == [404]
    assert failed == {f"telegram:{CHAT}": 1, "discord": 1}
    assert states == ["failed", "failed"]
    assert "notification failed for good" in caplog.text
    for secret in (wrong_token, unknown_webhook, unknown_webhook.rsplit("/", 1)[-1]):
        assert secret not in caplog.text, "a secret reached the log"


def test_a_chat_telegram_does_not_know_fails_that_message_only(
    store: Store, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.script("sendMessage", Reply.telegram_error(400, "Bad Request: chat not found"))

    async def scenario() -> list[str]:
        async with delivering(store, settings_for(fake_telegram)) as notifiers:
            await queue(store, notifiers, notice("a1"), notice("a2"))
            await eventually(
                lambda: notifiers.dispatcher.sent[f"telegram:{CHAT}"] == 1, "the second message"
            )
            return await outbox_states(store)

    assert asyncio.run(scenario()) == ["failed", "sent"]


def test_rate_limits_hold_per_chat_and_per_webhook(
    store: Store, fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    async def scenario() -> None:
        async with delivering(store, settings_for(fake_telegram, fake_discord)) as notifiers:
            await queue(store, notifiers, *[notice(f"a{i}") for i in range(7)])
            await eventually(
                lambda: len(fake_telegram.sent()) == 4 and len(fake_discord.delivered()) == 7,
                "the first four Telegram and all seven Discord messages",
            )

    asyncio.run(scenario())
    telegram = [c.at for c in fake_telegram.calls("sendMessage")]
    discord = [c.at for c in fake_discord.calls("execute")]
    slack = 0.05  # the limiter counts when it sends; the server when the request arrives
    assert all(b - a >= 1.0 - slack for a, b in itertools.pairwise(telegram))
    assert all(discord[i + 5] - discord[i] >= 2.0 - slack for i in range(len(discord) - 5))
    assert discord[4] - discord[0] < 1.0, "under the limit Discord gets its burst at once"
    assert [b["content"].split()[1] for b in fake_discord.delivered()] == [
        f"a{i}" for i in range(7)
    ], "in order"


def test_the_outbox_survives_a_restart_without_sending_anything_twice(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    path = tmp_path / "maestro.db"
    # The first message goes through; the second meets an outage and is still pending
    # when the maestro stops.
    fake_discord.script("execute", Reply.ok(), *[Reply(503, {"message": "down"})] * 50)

    async def before_restart(store: Store) -> list[str]:
        async with delivering(store, settings_for(discord=fake_discord)) as notifiers:
            await queue(store, notifiers, notice("a1"), notice("a2"))
            await eventually(lambda: len(fake_discord.calls("execute")) >= 2, "the outage")
        return await outbox_states(store)

    first = open_store(path)
    try:
        assert asyncio.run(before_restart(first)) == ["sent", "pending"]
    finally:
        first.close()

    with fake_discord.lock:
        fake_discord._scripts.clear()  # the outage is over

    async def after_restart(store: Store) -> list[str]:
        async with delivering(store, settings_for(discord=fake_discord)):
            await eventually(lambda: len(fake_discord.delivered()) == 2, "the pending message")
            await asyncio.sleep(0.5)
        return await outbox_states(store)

    second = open_store(path)
    try:
        assert asyncio.run(after_restart(second)) == ["sent", "sent"]
    finally:
        second.close()
    agents = [body["content"].split()[1] for body in fake_discord.delivered()]
    assert agents == ["a1", "a2"], "each message exactly once, across the restart"


# -- the alert service with its notifiers ------------------------------------------------
def test_telegram_buttons_acknowledge_and_silence_from_the_configured_chat_only(
    store: Store, fake_telegram: FakeTelegram
) -> None:
    publisher = RecordingPublisher()
    clock = FakeClock()

    async def scenario() -> None:
        notifiers = Notifiers.from_settings(store, settings_for(fake_telegram))
        service = alert_service(store, publisher, clock, notifiers.outbox)
        await service.start()
        task = asyncio.create_task(notifiers.run(actions=service))
        try:
            service.observe_agent("a1", "online", clock.now)
            service.observe_agent("a1", "offline", clock.now)
            advance(service, clock, 3)
            await eventually(lambda: len(fake_telegram.sent()) == 1, "the page")
            keyboard = fake_telegram.sent()[0]["reply_markup"]["inline_keyboard"]
            ack, silence = (button["callback_data"] for button in keyboard[0])
            alert_id = service.active_alerts("a1")[0].id
            assert ack == f"ack:{alert_id}"

            fake_telegram.press(chat_id=STRANGER_CHAT, data=ack, keyboard=keyboard)
            await eventually(
                lambda: len(fake_telegram.calls("answerCallbackQuery")) == 1, "the answer"
            )
            assert service.active_alerts("a1")[0].acked_by is None, "a stranger cannot ack"

            fake_telegram.press(chat_id=CHAT, data=ack, keyboard=keyboard)
            await eventually(lambda: service.active_alerts("a1")[0].acked_by is not None, "ack")
            assert service.active_alerts("a1")[0].acked_by == "telegram:operator"
            await eventually(lambda: fake_telegram.calls("editMessageReplyMarkup") != [], "edit")
            edit = fake_telegram.calls("editMessageReplyMarkup")[0].body
            assert edit["message_id"] == 7
            assert "reply_markup" not in edit, "the spent buttons are gone"

            fake_telegram.press(chat_id=CHAT, data=silence, username=None, user_id=77)
            await eventually(lambda: len(fake_telegram.calls("answerCallbackQuery")) == 3, "3")
            silences = await service.list_silences()
            assert [(s.agent, s.rule, s.created_by) for s in silences] == [
                ("a1", "agent_offline", "telegram:77")
            ]
            assert silences[0].ends_at - clock.now == pytest.approx(3600, abs=5)
            await eventually(lambda: publisher.shows(silenced=True), "the silenced snapshot")
            entries = await store.read(lambda conn: list_audit(conn, actor="telegram:operator"))
            assert [(e.action, e.target) for e in entries] == [("alert.ack", alert_id)]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await service.aclose()
            await notifiers.aclose()

    asyncio.run(scenario())
    answers = [c.body.get("text") for c in fake_telegram.calls("answerCallbackQuery")]
    assert answers == ["Not allowed here.", "Acknowledged.", "Silenced for 60 min."]


def test_a_flapping_agent_yields_one_message_per_channel(
    store: Store, fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    publisher = RecordingPublisher()
    clock = FakeClock()

    async def scenario() -> None:
        notifiers = Notifiers.from_settings(store, settings_for(fake_telegram, fake_discord))
        service = AlertService(
            store, publisher, TOPICS, AlertSettings(), EventBus(), clock=clock,
            outbox=notifiers.outbox,
        )  # fmt: skip
        await service.start()
        task = asyncio.create_task(notifiers.run())
        try:
            service.observe_agent("a1", "online", clock.now)
            for _ in range(10):  # up and down ten times in a minute
                service.observe_agent("a1", "offline", clock.now)
                advance(service, clock, 3)
                service.observe_agent("a1", "online", clock.now)
                advance(service, clock, 3)
            await eventually(
                lambda: len(fake_telegram.sent()) == 1 and len(fake_discord.delivered()) == 1,
                "one page per channel",
            )
            await asyncio.sleep(1.0)
            assert len(fake_telegram.sent()) == 1
            assert len(fake_discord.delivered()) == 1
            advance(service, clock, 40)  # it stayed up: the incident resolves
            await eventually(
                lambda: len(fake_telegram.sent()) == 2 and len(fake_discord.delivered()) == 2,
                "the resolved message",
            )
            assert "RESOLVED" in fake_telegram.sent()[1]["text"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await service.aclose()
            await notifiers.aclose()

    asyncio.run(scenario())


def test_alert_state_is_published_retained_and_survives_a_restart(store: Store) -> None:
    publisher = RecordingPublisher()
    clock = FakeClock()

    async def notices_queued() -> int:
        return len(await store.read(rows.all_rows))

    async def first_life() -> str:
        service = alert_service(store, publisher, clock, Outbox(["discord"]))  # no dispatcher
        await service.start()
        service.observe_agent("a1", "online", clock.now)
        service.observe_agent("a1", "offline", clock.now)
        advance(service, clock, 3)
        await service.aclose()
        snapshot = publisher.last("a1")
        assert snapshot is not None
        assert [(a.rule, a.phase) for a in snapshot.alerts] == [
            ("agent_offline", AlertPhase.FIRING)
        ]
        assert await notices_queued() == 1
        return snapshot.alerts[0].id

    alert_id = asyncio.run(first_life())
    publisher.messages.clear()

    async def second_life() -> None:
        service = alert_service(store, publisher, clock, Outbox(["discord"]))
        await service.start()
        await eventually(lambda: publisher.last("a1") is not None, "the republished snapshot")
        snapshot = publisher.last("a1")
        assert snapshot is not None
        assert [a.id for a in snapshot.alerts] == [alert_id], "the same incident after restart"
        service.observe_agent("a1", "offline", clock.now)  # the registry's word after restart
        advance(service, clock, 5)
        await service.list_alerts()  # waits for queued changes to be stored
        assert await notices_queued() == 1, "no second page for the same incident"

        record = await service.ack(alert_id, "alice")
        assert record.acked_by == "alice"
        with pytest.raises(AlertError):
            await service.ack("no-such-alert", "alice")
        firing = await service.list_alerts(phase="firing", agent="a1")
        assert [(a.id, a.acked_by) for a in firing] == [(alert_id, "alice")]
        with pytest.raises(AlertError, match="unknown phase"):
            await service.list_alerts(phase="burning")

        service.observe_agent("a1", "online", clock.now)  # clear_for_s is 0 here
        advance(service, clock, 1)
        await eventually(lambda: publisher.shows(alerts=0), "an empty snapshot")
        resolved = await service.list_alerts(phase=AlertPhase.RESOLVED)
        assert [a.id for a in resolved] == [alert_id]
        assert service.alerts_by_phase == {"pending": 0, "firing": 0}
        advance(service, clock, 3)
        await service.list_alerts()
        assert await notices_queued() == 2, "the resolved message"
        await service.aclose()

    asyncio.run(second_life())


def test_a_replica_that_is_not_the_leader_queues_no_notifications(store: Store) -> None:
    publisher = RecordingPublisher()
    clock = FakeClock()

    async def scenario() -> int:
        service = AlertService(
            store, publisher, TOPICS, AlertSettings(), EventBus(), clock=clock,
            outbox=Outbox(["discord"]), notify_gate=lambda: False,
        )  # fmt: skip
        await service.start()
        service.observe_agent("a1", "online", clock.now)
        service.observe_agent("a1", "offline", clock.now)
        advance(service, clock, 3)
        await service.aclose()
        assert publisher.last("a1") is not None, "it still publishes alert state"
        return len(await store.read(rows.all_rows))

    assert asyncio.run(scenario()) == 0


def test_operator_actions_are_validated_audited_and_streamed(store: Store) -> None:
    publisher = RecordingPublisher()
    clock = FakeClock()
    events = EventBus()

    async def scenario() -> None:
        service = AlertService(store, publisher, TOPICS, AlertSettings(), events, clock=clock)
        await service.start()
        refusals: list[tuple[dict[str, Any], str]] = [
            ({"agent": None, "rule": None}, "an agent, a rule or both"),
            ({"agent": "no/slash", "rule": None}, "invalid agent id"),
            ({"agent": None, "rule": "cpu_hgih"}, "unknown rule"),
            ({"agent": "a1", "rule": None, "duration_s": 0}, "more than 0 s"),
            ({"agent": "a1", "rule": None, "duration_s": 1e9}, "at most"),
            ({"agent": "a1", "rule": None, "actor": " "}, "actor"),
        ]
        with events.subscribe({"alert"}) as stream:
            for bad, message in refusals:
                with pytest.raises(AlertError, match=message):
                    await service.silence(**{"duration_s": 60, "actor": "alice", **bad})
            made = await service.silence(
                agent="a1", rule=None, duration_s=600, actor="alice", reason="maintenance"
            )
            assert [s.id for s in await service.list_silences()] == [made.id]
            ended = await service.unsilence(made.id, "bob")
            assert (ended.ended_by, await service.list_silences()) == ("bob", [])
            with pytest.raises(AlertError):
                await service.unsilence(made.id, "bob")
            with pytest.raises(AlertError):
                await service.silence_alert("no-such-alert", 3600, "alice")
            service.observe_agent("a1", "offline", clock.now)
            changes = [stream.queue.get_nowait().data["change"] for _ in range(3)]
            assert changes == ["silence_added", "silence_ended", "firing"]
        entries = await store.read(list_audit)
        assert [(e.actor, e.action, e.target) for e in reversed(entries)] == [
            ("alice", "alert.silence", made.id),
            ("bob", "alert.unsilence", made.id),
        ]
        assert entries[-1].detail["reason"] == "maintenance"
        await service.aclose()

    asyncio.run(scenario())


def test_only_the_replica_the_gate_lets_through_polls_the_buttons(
    store: Store, fake_telegram: FakeTelegram
) -> None:
    class NoActions:
        async def ack(self, alert_id: str, actor: str) -> None:
            raise AssertionError("not reached")

        async def silence_alert(self, alert_id: str, duration_s: float, actor: str) -> None:
            raise AssertionError("not reached")

    leader = False

    async def scenario() -> None:
        notifiers = Notifiers.from_settings(store, settings_for(fake_telegram))
        notifiers.actions = NoActions()
        notifiers.gate = lambda: leader
        task = asyncio.create_task(notifiers.run())
        try:
            await asyncio.sleep(0.5)
            assert fake_telegram.calls("getUpdates") == [], "a follower leaves the bot alone"
            nonlocal leader
            leader = True
            await eventually(lambda: fake_telegram.calls("getUpdates") != [], "the leader polls")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await notifiers.aclose()

    asyncio.run(scenario())
