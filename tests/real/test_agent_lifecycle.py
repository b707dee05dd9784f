"""Status, Last Will, epochs and reconnects of a real agent on a real Mosquitto."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from arete.payloads import AgentState, Status, decode_heartbeat, encode, is_stale
from tests.fixtures.agent import AgentProc, statuses, wait_status
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import MqttProbe


def online(status: Status) -> bool:
    return status.state is AgentState.ONLINE


def test_fresh_viewer_receives_the_retained_online_status(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("web-01", env={"ARETE_AGENT_LABELS": '{"role": "web"}'})
    watcher = mqtt("viewer", broker.viewer_password)
    watcher.subscribe(broker.topics.status("web-01"))
    wait_status(watcher, broker.topics, "web-01", online)

    late = mqtt("viewer", broker.viewer_password)  # subscribes after the fact
    late.subscribe(broker.topics.status("web-01"))
    status = wait_status(late, broker.topics, "web-01", online, timeout=3)
    assert status.epoch > 0
    assert status.labels == {"role": "web"}
    assert status.heartbeat_s == 1.0
    assert status.version
    assert status.host
    assert agent.proc.alive()


def test_kill_9_publishes_the_retained_will_in_under_a_second(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("a1")
    watcher = mqtt("viewer", broker.viewer_password)
    watcher.subscribe(broker.topics.status("a1"))
    up = wait_status(watcher, broker.topics, "a1", online)

    killed_at = time.monotonic()
    agent.kill9()
    will = wait_status(watcher, broker.topics, "a1", lambda s: s.state is AgentState.OFFLINE, 5)
    assert time.monotonic() - killed_at < 1.0
    assert will.epoch == up.epoch, "the Will carries the epoch of its connection"
    assert will.reason == "connection_lost"

    late = mqtt("viewer", broker.viewer_password)
    late.subscribe(broker.topics.status("a1"))
    retained = wait_status(late, broker.topics, "a1", lambda s: True, timeout=3)
    assert retained.state is AgentState.OFFLINE


def test_sigterm_publishes_stopping_then_offline_and_no_will(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("a1")
    watcher = mqtt("viewer", broker.viewer_password)
    watcher.subscribe(broker.topics.status("a1"))
    up = wait_status(watcher, broker.topics, "a1", online)

    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(10) == 0
    wait_status(watcher, broker.topics, "a1", lambda s: s.state is AgentState.OFFLINE)
    time.sleep(1.0)  # a Will, if any, would arrive right after the socket closed
    after = [s for s in statuses(watcher, broker.topics, "a1") if s.epoch == up.epoch]
    assert [(s.state, s.reason) for s in after] == [
        (AgentState.ONLINE, None),
        (AgentState.STOPPING, "shutdown"),
        (AgentState.OFFLINE, "shutdown"),
    ]


def test_a_late_will_from_an_old_connection_is_identifiable_as_stale(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    """An old connection of the agent dies after the agent came back (half-open TCP)."""
    watcher = mqtt("viewer", broker.viewer_password)
    watcher.subscribe(broker.topics.status("a1"))
    config = broker.add_agent("a1")

    # The "old connection": the agent's credentials and a Will from an earlier epoch.
    old = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="a1:old-connection",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    old.username_pw_set("a1", broker.password_of("a1"))
    stale_will = Status(
        state=AgentState.OFFLINE,
        epoch=1,
        ts=time.time(),
        version="0",
        host="h",
        heartbeat_s=1,
        reason="connection_lost",
    )
    old.will_set(broker.topics.status("a1"), encode(stale_will), qos=1, retain=True)
    old.connect(broker.host, broker.port, keepalive=60)
    old.loop_start()

    start_agent("a1", config=config)
    fresh = wait_status(watcher, broker.topics, "a1", online)
    old.loop_stop()
    sock = old.socket()
    assert sock is not None
    sock.close()  # dies without DISCONNECT: the broker publishes its Will now

    late = wait_status(watcher, broker.topics, "a1", lambda s: s.state is AgentState.OFFLINE)
    assert late.epoch < fresh.epoch
    assert is_stale(fresh, late), "a consumer that saw the fresh online must ignore this Will"
    assert not is_stale(fresh, fresh)


def test_broker_restart_the_agent_reconnects_and_republishes_status(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1")
    watcher = mqtt("viewer", broker.viewer_password)
    watcher.subscribe(broker.topics.status("a1"))
    first = wait_status(watcher, broker.topics, "a1", online)

    broker.restart()
    again = mqtt("viewer", broker.viewer_password)
    again.subscribe(broker.topics.status("a1"))
    back = wait_status(again, broker.topics, "a1", lambda s: online(s) and s.epoch > first.epoch)
    assert back.epoch > first.epoch


def test_an_idle_agent_sends_heartbeats_from_its_main_loop(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "60"})
    watcher = mqtt("viewer", broker.viewer_password)
    topic = broker.topics.heartbeat("a1")
    watcher.subscribe(topic)
    watcher.subscribe(broker.topics.status("a1"))
    up = wait_status(watcher, broker.topics, "a1", online)

    watcher.wait_for_messages(lambda m: m.topic == topic, 4, timeout=8)
    beats = [decode_heartbeat(m.payload) for m in watcher.messages if m.topic == topic]
    assert all(beat.epoch == up.epoch for beat in beats)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(beats)]
    assert all(0.5 < gap < 1.6 for gap in gaps), f"one beat per heartbeat_s (1 s): {gaps}"


def test_heartbeats_continue_while_metrics_flow(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.2"})
    watcher = mqtt("viewer", broker.viewer_password)
    topic = broker.topics.heartbeat("a1")
    watcher.subscribe(topic)
    watcher.wait_for_messages(lambda m: m.topic == topic, 3, timeout=6)


def test_a_stopped_agent_stops_its_heartbeats(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "60"})
    watcher = mqtt("viewer", broker.viewer_password)
    topic = broker.topics.heartbeat("a1")
    watcher.subscribe(topic)
    watcher.wait_for_message(lambda m: m.topic == topic, 5)
    agent.signal(signal.SIGSTOP)
    time.sleep(0.3)
    count = sum(m.topic == topic for m in watcher.messages)
    time.sleep(2.5)
    assert sum(m.topic == topic for m in watcher.messages) == count, "a hung agent goes quiet"
    agent.signal(signal.SIGCONT)
    watcher.wait_for_messages(lambda m: m.topic == topic, count + 1, timeout=5)


def test_wrong_password_keeps_retrying_without_crashing(
    broker: Broker, start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("a1", env={"ARETE_AGENT_MQTT__PASSWORD": "not-the-password-123"})
    time.sleep(2.0)
    assert agent.proc.alive()
    assert "connection refused" in agent.output()


def test_invalid_config_exits_2_with_a_clear_message(
    broker: Broker, start_agent: Callable[..., AgentProc]
) -> None:
    agent = start_agent("a1", env={"ARETE_AGENT_MQTT__PORT": "not-a-port"})
    assert agent.proc.wait(15) == 2
    assert "mqtt.port" in agent.output()


def test_an_agent_made_with_tls_connects_through_the_generated_ca(
    tls_broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    config = tls_broker.add_agent("secure-01", tls=True)
    text = config.read_text()
    assert "tls = true" in text
    assert str(tls_broker.tls_port) in text
    watcher = mqtt("viewer", tls_broker.viewer_password, port=tls_broker.port)
    watcher.subscribe(tls_broker.topics.status("secure-01"))
    start_agent("secure-01", config=config)
    wait_status(watcher, tls_broker.topics, "secure-01", online)
