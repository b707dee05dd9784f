"""The registry of a real maestro against real agents on a real Mosquitto."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from arete.payloads import AgentState, Status, encode
from tests.fixtures.agent import AgentProc, ReadyAgent, wait_status
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for


def test_a_maestro_started_after_its_agents_knows_them_from_retained_status_alone(
    broker: Broker,
    ready_agent: ReadyAgent,
    start_agent: Callable[..., AgentProc],
    mqtt: Callable[..., MqttProbe],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    ready_agent("web1")
    ready_agent("db1")
    gone = start_agent("old1")
    probe = mqtt("viewer", broker.viewer_password)
    probe.subscribe(broker.topics.status("old1"))
    wait_status(probe, broker.topics, "old1", lambda s: s.state is AgentState.ONLINE)
    gone.signal(signal.SIGTERM)
    gone.proc.wait(10)

    maestro = maestro_thread()
    wait_for(lambda: len(maestro.states()) == 3, 5, "three agents in the registry")
    assert maestro.states() == {"web1": "online", "db1": "online", "old1": "offline"}
    view = maestro.sync(lambda m: m.registry.view("old1"))
    assert view["clean"] is True
    assert view["host"]


def test_kill_9_of_an_agent_is_offline_once_its_will_settled(
    ready_agent: ReadyAgent, maestro_thread: Callable[..., MaestroThread]
) -> None:
    # The Will waits liveness.will_settle_s (1 s by default, 0.5 s here): a broker that
    # stops publishes every Will, and those must not count (docs/maestro.md).
    maestro = maestro_thread(liveness={"tick_s": 0.1, "digest_s": 0.2, "will_settle_s": 0.5})
    agent, _ = ready_agent("a1")
    maestro.wait_state("a1", "online", timeout=5)
    began = time.monotonic()
    agent.kill9()
    maestro.wait_state("a1", "offline", timeout=5)
    assert time.monotonic() - began < 1.0
    assert maestro.sync(lambda m: m.registry.view("a1"))["clean"] is False


def test_a_silent_agent_goes_late_then_critical_and_back_online_when_it_resumes(
    ready_agent: ReadyAgent, maestro_thread: Callable[..., MaestroThread]
) -> None:
    maestro = maestro_thread()
    agent, _ = ready_agent("a1")  # heartbeat 1 s: late after 1.3 s, critical after 3.3 s
    maestro.wait_state("a1", "online", timeout=5)
    agent.signal(signal.SIGSTOP)
    try:
        late_after = maestro.wait_state("a1", "late", timeout=5)
        critical_after = late_after + maestro.wait_state("a1", "critical", timeout=8)
        assert 0.8 < late_after < 2.5
        assert 2.5 < critical_after < 5.0
    finally:
        agent.signal(signal.SIGCONT)
    maestro.wait_state("a1", "online", timeout=5)


def test_late_will_does_not_mark_reconnected_agent_offline(
    broker: Broker,
    ready_agent: ReadyAgent,
    mqtt: Callable[..., MqttProbe],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    maestro = maestro_thread()
    _, _commander = ready_agent("a1")
    maestro.wait_state("a1", "online", timeout=5)
    current = maestro.sync(lambda m: m.registry.states["a1"].epoch)
    stale_will = Status(
        state=AgentState.OFFLINE,
        epoch=current - 1,
        ts=time.time(),
        version="0",
        host="h",
        heartbeat_s=1,
        reason="connection_lost",
    )
    hub = mqtt("maestro", broker.maestro_password)
    hub.publish(broker.topics.status("a1"), encode(stale_will), qos=1, retain=False)
    time.sleep(1.0)
    assert maestro.state_of("a1") == "online"
    assert maestro.sync(lambda m: m.registry.stale_ignored) >= 1


def test_bad_payloads_are_counted_and_dropped_and_the_maestro_keeps_going(
    broker: Broker,
    ready_agent: ReadyAgent,
    mqtt: Callable[..., MqttProbe],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    maestro = maestro_thread()
    ready_agent("a1")
    maestro.wait_state("a1", "online", timeout=5)
    hub = mqtt("maestro", broker.maestro_password)
    t = broker.topics
    garbage = [
        (t.metrics("x1"), b""),
        (t.metrics("x1"), b"\xff\xfe not json"),
        (t.metrics("x1"), b"[" * 100_000),
        (t.metrics("x1"), b'{"schema": 99, "epoch": 1, "seq": 1, "samples": []}'),
        (t.metrics("x1"), b'{"schema": 1, "epoch": -1, "seq": 1, "samples": [{"ts": 1}]}'),
        (t.metrics("x1"), b"{" + b" " * (5 * 1024 * 1024) + b"}"),
        (t.heartbeat("x1"), b"nope"),
        (t.status("x1"), b'{"state": "dancing"}'),
        (t.reply("x1"), b"\x00\x01"),
        (t.maestro("other"), b"{}"),
    ]
    for topic, payload in garbage:
        hub.publish(topic, payload, qos=1)
    expected = len(garbage)
    wait_for(
        lambda: sum(maestro.sync(lambda m: dict(m.ingest.errors)).values()) >= expected,
        10,
        "every bad message counted",
    )
    errors = maestro.sync(lambda m: dict(m.ingest.errors))
    assert errors[("metrics", "too_large")] == 1
    assert errors[("metrics", "schema")] >= 2
    assert "x1" not in maestro.states(), "garbage did not create an agent"
    stored_before = maestro.sync(lambda m: m.store.writer.rows_stored)
    wait_for(
        lambda: maestro.sync(lambda m: m.store.writer.rows_stored) > stored_before + 2,
        10,
        "the good agent's samples still stored",
    )
    assert maestro.state_of("a1") == "online"
