"""The command service against a real Mosquitto and real agents, on a real SQLite store.

The publisher is the maestro's own MQTT link (:class:`maestro.link.MaestroLink`, the maestro
account), with replies handed to the service under test. Tests at the bottom use a fake
publisher where the broker cannot show the behaviour (a PUBACK that never comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.errors import PayloadError, TopicError
from arete.payloads import ErrorInfo, Reply, ReplyState, decode_command, decode_reply
from arete.topics import Kind, Topics
from maestro.commands import (
    COMMAND_MIGRATIONS,
    CommandRecord,
    CommandService,
    CommandSettings,
    CommandState,
)
from maestro.errors import CommandError, LinkError
from maestro.events import EventBus
from maestro.keys import create_keys, load_signing_key, read_public_key
from maestro.link import LinkConfig, MaestroLink
from maestro.store.core import Store
from tests.fixtures.agent import ReadyAgent
from tests.fixtures.broker import Broker

SETTINGS = CommandSettings(reply_grace_s=0.5)
S = CommandState
ROUND_TRIP = [S.QUEUED, S.SENT, S.ACCEPTED, S.RUNNING, S.OK]


# -- the maestro's real MQTT link, its replies handed to the service under test ------------
class LinkPublisher:
    """A :class:`MaestroLink` per service (each test's event loop gets its own)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.topics = broker.topics
        self.link: MaestroLink | None = None
        self._service: CommandService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self, service: CommandService) -> None:
        self._service, self._loop = service, asyncio.get_running_loop()
        config = LinkConfig(
            replica=f"test-{uuid.uuid4().hex[:8]}",
            host=self.broker.host,
            port=self.broker.port,
            username="maestro",
            password=self.broker.maestro_password,
            topics=self.topics,
            subscriptions=((self.topics.all_of(Kind.REPLY), 1),),
            session_expiry_s=0,
        )
        self.link = MaestroLink(config, self._on_message)
        self.link.start()
        async with asyncio.timeout(5):
            await self.link.wait_connected()

    async def close(self) -> None:
        if self.link is not None:
            await self.link.stop()
        self.link = self._service = self._loop = None

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
        if self.link is None:
            raise LinkError("the test link is not open")
        await self.link.publish(
            topic,
            payload,
            qos=qos,
            retain=retain,
            expiry_s=expiry_s,
            response_topic=response_topic,
            correlation=correlation,
        )

    def _on_message(self, message: paho.MQTTMessage, generation: int) -> None:
        service, loop, link = self._service, self._loop, self.link
        if link is not None and message.qos == 1:
            link.ack(generation, message.mid)
        if service is None or loop is None:
            return
        try:
            agent_id = self.topics.parse(message.topic).agent_id
            reply = decode_reply(message.payload)
        except (TopicError, PayloadError):
            return
        props = getattr(message, "properties", None)
        data = getattr(props, "CorrelationData", None)
        correlation = bytes(data) if data is not None else None
        loop.call_soon_threadsafe(service.on_reply, agent_id, reply, correlation, service.clock())


@pytest.fixture
def publisher(broker: Broker) -> LinkPublisher:
    return LinkPublisher(broker)


@contextlib.asynccontextmanager
async def running_service(
    db: Path,
    publisher: Any,
    topics: Topics,
    *,
    key: Ed25519PrivateKey | None = None,
    clock: Callable[[], float] = time.time,
    settings: CommandSettings = SETTINGS,
) -> AsyncIterator[CommandService]:
    """A started, serving command service on the store at ``db``; closed on exit."""
    store = await asyncio.to_thread(Store.open, db, {"commands": COMMAND_MIGRATIONS})
    service = CommandService(
        store, publisher, topics, EventBus(), settings, signing_key=key, clock=clock
    )
    if isinstance(publisher, LinkPublisher):
        await publisher.open(service)
    serving: asyncio.Task[None] | None = None
    try:
        await service.start()
        serving = asyncio.create_task(service.serve())
        yield service
    finally:
        if serving is not None:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        await service.close()
        if isinstance(publisher, LinkPublisher):
            await publisher.close()
        await store.aclose()


async def history_states(service: CommandService, command_id: str) -> list[CommandState]:
    return [event.state for event in await service.history(command_id)]


# -- with a real broker and agents -----------------------------------------------------------
def test_a_metrics_command_round_trip_is_recorded_step_by_step(
    ready_agent: ReadyAgent, broker: Broker, publisher: LinkPublisher, tmp_path: Path
) -> None:
    ready_agent("a1")

    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", publisher, broker.topics) as service:
            with service.events.subscribe({"command"}) as events:
                record = await service.run("a1", "metrics", actor="alice")
                seen = [events.queue.get_nowait().data for _ in range(events.queue.qsize())]
            assert record.state is S.OK, record
            assert record.result["mem_total"] > 0
            assert record.actor == "alice"
            assert await history_states(service, record.id) == ROUND_TRIP
            assert [event["state"] for event in seen] == [state.value for state in ROUND_TRIP]
            stored = await service.get(record.id)
            assert stored.state is S.OK
            assert stored.result == record.result
            listed = await service.list(agent="a1")
            assert [r.id for r in listed] == [record.id]
            assert listed[0].has_result
            assert listed[0].result is None  # listings leave results out unless asked
            assert service.finished_total["ok"] == 1

    asyncio.run(scenario())


def test_an_agent_with_the_public_key_runs_signed_commands_and_rejects_unsigned_ones(
    ready_agent: ReadyAgent, broker: Broker, publisher: LinkPublisher, tmp_path: Path
) -> None:
    create_keys(tmp_path / "data")
    key = load_signing_key(tmp_path / "data" / "secrets" / "maestro-signing.key")
    public_key = read_public_key(tmp_path / "data")
    ready_agent("a1", env={"ARETE_AGENT_COMMANDS__PUBLIC_KEY": public_key})
    marker = tmp_path / "unsigned-ran"
    db = tmp_path / "m.db"

    async def scenario() -> None:
        async with running_service(db, publisher, broker.topics, key=key) as signed:
            record = await signed.run("a1", "shell", {"argv": ["echo", "signed"]}, actor="bob")
            assert record.state is S.OK, record
            assert record.result["stdout"] == "signed\n"
        async with running_service(db, publisher, broker.topics, key=None) as unsigned:
            args = {"argv": ["touch", str(marker)]}
            refused = await unsigned.run("a1", "shell", args, actor="bob")
            assert refused.state is S.REJECTED
            assert refused.error_code == "unsigned"

    asyncio.run(scenario())
    assert not marker.exists()


def test_a_command_nobody_answers_times_out_at_its_deadline(
    ready_agent: ReadyAgent, broker: Broker, publisher: LinkPublisher, tmp_path: Path
) -> None:
    agent, _ = ready_agent("a1")
    agent.signal(signal.SIGSTOP)  # alive and connected as far as the broker knows, but mute

    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", publisher, broker.topics) as service:
            stopped, ghost = await asyncio.gather(
                service.run("a1", "metrics", timeout_s=1.5, actor="alice"),
                service.run("ghost", "metrics", timeout_s=1.5, actor="alice"),  # no such agent
            )
            for record in (stopped, ghost):
                assert record.state is S.TIMED_OUT
                assert record.error_code == "no_reply"
                assert record.finished_at is not None
                # expires 1.5 s after it was issued, plus the 0.5 s grace for the reply
                assert 1.9 <= record.finished_at - record.created_at <= 3.0
                assert await history_states(service, record.id) == [
                    S.QUEUED, S.SENT, S.TIMED_OUT,
                ]  # fmt: skip
            assert service.finished_total["timed_out"] == 2

    try:
        asyncio.run(scenario())
    finally:
        agent.signal(signal.SIGCONT)


def test_a_maestro_whose_clock_is_far_off_gets_clock_skew_and_nothing_runs(
    ready_agent: ReadyAgent, broker: Broker, publisher: LinkPublisher, tmp_path: Path
) -> None:
    ready_agent("a1")
    marker = tmp_path / "skewed-ran"

    def late_clock() -> float:
        return time.time() - 7200  # a maestro whose clock is two hours behind

    async def scenario() -> None:
        async with running_service(
            tmp_path / "m.db", publisher, broker.topics, clock=late_clock
        ) as service:
            args = {"argv": ["touch", str(marker)]}
            record = await service.run("a1", "shell", args, timeout_s=30, actor="alice")
            assert record.state is S.REJECTED
            assert record.error_code == "clock_skew"
            assert await history_states(service, record.id) == [S.QUEUED, S.SENT, S.REJECTED]

    asyncio.run(scenario())
    time.sleep(0.3)
    assert not marker.exists()


def test_fan_out_runs_on_every_agent_and_reports_each_outcome(
    ready_agent: ReadyAgent, broker: Broker, publisher: LinkPublisher, tmp_path: Path
) -> None:
    for agent_id in ("a1", "a2", "a3"):
        ready_agent(agent_id)

    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", publisher, broker.topics) as service:
            targets = ["a1", "a2", "ghost", "a3"]
            records = await service.fan_out(
                targets,
                "shell",
                {"argv": ["hostname"]},
                timeout_s=2,
                actor="ops",
                job_id="job-1",
            )
            assert [r.agent for r in records] == targets
            assert [r.state for r in records] == [S.OK, S.OK, S.TIMED_OUT, S.OK]
            assert all(r.job_id == "job-1" and r.actor == "ops" for r in records)
            assert await service.job_counts("job-1") == {S.OK: 3, S.TIMED_OUT: 1}
            assert len(await service.list(job_id="job-1")) == 4

    asyncio.run(scenario())


def test_a_restarted_service_resumes_a_command_the_agent_never_got(
    broker: Broker,
    publisher: LinkPublisher,
    ready_agent: ReadyAgent,
    tmp_path: Path,
) -> None:
    db = tmp_path / "m.db"  # a1 is not running yet: nobody receives the first publish

    async def before_restart() -> CommandRecord:
        async with running_service(db, publisher, broker.topics) as service:
            record = await service.send("a1", "metrics", timeout_s=60, actor="alice")
            sent = await service.wait(record.id, timeout_s=0.5)
            assert sent.state is S.SENT
            return sent

    async def after_restart(command_id: str) -> None:
        async with running_service(db, publisher, broker.topics) as service:
            assert service.resumed_total == 1
            record = await service.wait(command_id, timeout_s=15)
            assert record.state is S.OK, record
            notes = [event.detail for event in await service.history(command_id)]
            assert "re-published after a restart" in notes

    pending = asyncio.run(before_restart())
    ready_agent("a1")
    asyncio.run(after_restart(pending.id))


# -- with a fake publisher -------------------------------------------------------------------
class FakePublisher:
    """Records publishes; ``hang`` never acknowledges, ``refuse`` raises LinkError."""

    def __init__(self, *, hang: bool = False, refuse: bool = False) -> None:
        self.hang = hang
        self.refuse = refuse
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish(self, topic: str, payload: bytes, **props: Any) -> None:
        if self.refuse:
            raise LinkError("not authorised")
        if self.hang:
            await asyncio.Event().wait()
        self.published.append((topic, payload, props))


TOPICS = Topics("tfake")


def reply(command_id: str | None, state: ReplyState, **fields: Any) -> Reply:
    return Reply(id=command_id, state=state, ts=time.time(), **fields)


def test_the_published_command_carries_expiry_response_topic_and_correlation(
    tmp_path: Path,
) -> None:
    fake = FakePublisher()

    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", fake, TOPICS) as service:
            record = await service.send("a1", "metrics", timeout_s=20, actor="alice")
            await asyncio.sleep(0.05)
            topic, payload, props = fake.published[0]
            assert topic == TOPICS.cmd("a1")
            command = decode_command(payload)
            assert (command.id, command.name, command.args) == (record.id, "metrics", {})
            assert command.expires_at - command.issued_at == 20
            assert props["qos"] == 1
            assert props["retain"] is False
            assert props["expiry_s"] == 20
            assert props["response_topic"] == TOPICS.reply("a1")
            assert props["correlation"] == record.id.encode()

    asyncio.run(scenario())


def test_replies_from_the_wrong_agent_unknown_ids_and_duplicates_are_ignored_and_counted(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", FakePublisher(), TOPICS) as service:
            record = await service.send("a1", "metrics", timeout_s=20, actor="alice")
            assert not service.on_reply("a2", reply(record.id, ReplyState.OK))
            assert not service.on_reply("a1", reply("c-unknown", ReplyState.OK))
            assert not service.on_reply("a1", reply(None, ReplyState.OK))
            assert service.on_reply("a1", reply(record.id, ReplyState.ACCEPTED))
            assert not service.on_reply("a1", reply(record.id, ReplyState.ACCEPTED))
            duplicate = ErrorInfo("duplicate", "already received")
            assert not service.on_reply(
                "a1", reply(record.id, ReplyState.REJECTED, error=duplicate)
            )
            # a reply without an id is matched through its correlation data
            assert service.on_reply(
                "a1", reply(None, ReplyState.OK, result={"x": 1}), record.id.encode()
            )
            done = await service.wait(record.id, timeout_s=5)
            assert (done.state, done.result) == (S.OK, {"x": 1})
            assert service.replies_ignored_total == {
                "no_id": 1,
                "unknown": 1,
                "wrong_agent": 1,
                "no_change": 2,
            }

    asyncio.run(scenario())


def test_a_command_the_broker_never_acknowledges_times_out_as_not_delivered(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", FakePublisher(hang=True), TOPICS) as svc:
            record = await svc.run("a1", "metrics", timeout_s=0.5, actor="alice")
            assert (record.state, record.error_code) == (S.TIMED_OUT, "not_delivered")
            assert record.sent_at is None
            assert record.finished_at is not None
            assert 0.9 <= record.finished_at - record.created_at <= 2.0

    asyncio.run(scenario())


def test_a_publish_the_broker_refuses_fails_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_service(
            tmp_path / "m.db", FakePublisher(refuse=True), TOPICS
        ) as service:
            record = await service.run("a1", "metrics", timeout_s=30, actor="alice")
            assert (record.state, record.error_code) == (S.FAILED, "not_delivered")
            assert "not authorised" in (record.error_message or "")

    asyncio.run(scenario())


def test_bad_requests_are_refused_before_anything_is_recorded_or_sent(tmp_path: Path) -> None:
    fake = FakePublisher()

    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", fake, TOPICS) as service:
            attempts: list[tuple[Callable[[], Any], str]] = [
                (lambda: service.send("a/1", "metrics", actor="x"), "bad_agent"),
                (lambda: service.send("a1", "format_disk", actor="x"), "unknown_command"),
                (lambda: service.send("a1", "metrics", {"x": 1}, actor="x"), "bad_args"),
                # Lone surrogates (JSON "\ud800" decodes to one) cannot be stored or sent.
                (lambda: service.send("a1", "shell", {"\ud800": 1}, actor="x"), "bad_args"),
                (lambda: service.send("a1", "shell", {"command": "\ud800"}, actor="x"), "bad_args"),
                (
                    lambda: service.send("a1", "shell", {"command": float("nan")}, actor="x"),
                    "bad_args",
                ),
                (lambda: service.send("a1", "metrics", timeout_s=7200, actor="x"), "bad_timeout"),
                (lambda: service.fan_out(["a1", "a1"], "metrics", actor="x"), "bad_agent"),
                (lambda: service.fan_out(["a1", "a/2"], "metrics", actor="x"), "bad_agent"),
                (lambda: service.get("c-nope"), "not_found"),
            ]
            for attempt, code in attempts:
                with pytest.raises(CommandError) as caught:
                    await attempt()
                assert caught.value.code == code
            assert await service.list() == []
            assert fake.published == []

    asyncio.run(scenario())


def test_wait_with_a_timeout_returns_the_command_as_it_stands(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", FakePublisher(), TOPICS) as service:
            record = await service.send("a1", "metrics", timeout_s=30, actor="alice")
            service.on_reply("a1", reply(record.id, ReplyState.RUNNING))
            started = time.monotonic()
            current = await service.wait(record.id, timeout_s=0.2)
            assert current.state is S.RUNNING
            assert time.monotonic() - started < 1.0

    asyncio.run(scenario())


def test_listing_pages_newest_first_and_filters(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_service(tmp_path / "m.db", FakePublisher(), TOPICS) as service:
            made = [
                await service.send(agent, "metrics", timeout_s=30, actor="alice")
                for agent in ("a1", "a2", "a1", "a1")
            ]
            newest_first = [r.id for r in reversed(made)]
            page1 = await service.list(limit=2)
            page2 = await service.list(limit=2, before=page1[-1].id)
            assert [r.id for r in page1 + page2] == newest_first
            assert [r.agent for r in await service.list(agent="a1")] == ["a1"] * 3
            service.on_reply("a1", reply(made[0].id, ReplyState.OK))
            await service.wait(made[0].id, timeout_s=5)
            assert [r.id for r in await service.list(state="ok")] == [made[0].id]
            with pytest.raises(CommandError):
                await service.list(state="bogus")

    asyncio.run(scenario())


def test_finished_commands_older_than_keep_days_are_purged(tmp_path: Path) -> None:
    now = [time.time()]
    settings = CommandSettings(keep_days=1)

    async def scenario() -> None:
        async with running_service(
            tmp_path / "m.db", FakePublisher(), TOPICS, clock=lambda: now[0], settings=settings
        ) as service:
            old = await service.send("a1", "metrics", timeout_s=30, actor="alice")
            service.on_reply("a1", reply(old.id, ReplyState.OK))
            await service.wait(old.id, timeout_s=5)
            now[0] += 2 * 86400
            still_open = await service.send("a1", "metrics", timeout_s=30, actor="alice")
            assert await service.purge() == 1
            assert [r.id for r in await service.list()] == [still_open.id]
            assert await service.history(old.id) == []

    asyncio.run(scenario())


def test_states_left_open_by_a_crash_are_timed_out_at_start_once_past_their_deadline(
    tmp_path: Path,
) -> None:
    now = [time.time()]
    db = tmp_path / "m.db"

    async def scenario() -> None:
        async with running_service(db, FakePublisher(hang=True), TOPICS) as service:
            record = await service.send("a1", "metrics", timeout_s=5, actor="alice")
        now[0] += 60
        fresh = FakePublisher()
        async with running_service(db, fresh, TOPICS, clock=lambda: now[0]) as service:
            done = await service.wait(record.id, timeout_s=5)
            assert (done.state, done.error_code) == (S.TIMED_OUT, "not_delivered")
            assert fresh.published == [], "an expired command is never re-published"

    asyncio.run(scenario())
