"""``arete agents remove`` makes MQTT clients forget the agent: its retained status and
alert state, and its Home Assistant discovery configs, are cleared on a real broker."""

from __future__ import annotations

import json
from collections.abc import Callable

from arete.topics import Kind
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import Message, MqttProbe

HA = "homeassistant"
CONFIGS_PER_AGENT = 8  # connectivity + 7 sensors (arete.homeassistant)


def _config(message: Message) -> bool:
    return message.topic.startswith(f"{HA}/") and message.topic.endswith("/config")


def retained_now(mqtt: Callable[..., MqttProbe], broker: Broker, name: str) -> dict[str, bytes]:
    """What a client subscribing now is told (the broker's retained messages), as the
    viewer (a phone app, Home Assistant) sees it."""
    probe = mqtt("viewer", broker.viewer_password, client_id=f"viewer:{name}")
    probe.subscribe(broker.topics.all_of(Kind.STATUS))
    probe.subscribe(f"{HA}/#")
    probe.expect_no_message(lambda m: False, within=1.0)  # the retained ones arrive
    return {m.topic: m.payload for m in probe.messages if m.retain and m.payload}


def online(mqtt: Callable[..., MqttProbe], broker: Broker, *agent_ids: str) -> MqttProbe:
    watcher = mqtt("viewer", broker.viewer_password, client_id="viewer:watch")
    for agent_id in agent_ids:
        topic = broker.topics.status(agent_id)
        watcher.subscribe(topic)

        def is_online(m: Message, topic: str = topic) -> bool:
            return m.topic == topic and json.loads(m.payload)["state"] == "online"

        watcher.wait_for_message(is_online, timeout=20)
    return watcher


def test_removing_a_connected_agent_clears_its_status_and_its_home_assistant_entities(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
) -> None:
    maestro_thread(homeassistant={"enabled": True, "interval_s": 0.2})
    start_agent("a1")
    start_agent("a2")
    online(mqtt, broker, "a1", "a2")
    ha = mqtt("viewer", broker.viewer_password, client_id="viewer:home-assistant")
    ha.subscribe(f"{HA}/#")
    ha.wait_for_messages(lambda m: _config(m) and bool(m.payload), 2 * CONFIGS_PER_AGENT, 20)

    # Removed while it is still connected: the broker drops it at the reload, and the
    # status is cleared after that (a late Will would bring it back).
    done = broker.remove_agent("a1")
    assert "cleared its retained messages" in done.stdout, done.stdout + done.stderr

    removed = ha.wait_for_messages(lambda m: _config(m) and not m.payload, CONFIGS_PER_AGENT, 20)
    assert all("/a1/" in m.topic for m in removed), "Home Assistant drops a1's entities"
    left = retained_now(mqtt, broker, "after")
    assert broker.topics.status("a1") not in left, "a new client is not told about a1"
    assert json.loads(left[broker.topics.status("a2")])["state"] == "online"
    configs = [t for t in left if t.startswith(f"{HA}/")]
    assert len(configs) == CONFIGS_PER_AGENT
    assert all("/a2/" in t for t in configs), "a2 keeps its entities"


def test_without_home_assistant_only_the_status_is_cleared_and_nothing_else_is_sent(
    broker: Broker, start_agent: Callable[..., AgentProc], mqtt: Callable[..., MqttProbe]
) -> None:
    agent = start_agent("a1")
    online(mqtt, broker, "a1")
    ha_watch = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-watch")
    ha_watch.subscribe(f"{HA}/#")
    agent.proc.stop()  # a stopped agent: its last status stays retained

    done = broker.remove_agent("a1")
    assert f"cleared its retained messages (1): {broker.topics.status('a1')}" in done.stdout

    assert broker.topics.status("a1") not in retained_now(mqtt, broker, "after")
    ha_watch.expect_no_message(_config, within=0.5)  # no discovery: nothing published there


def test_an_agent_removed_while_the_broker_was_down_is_forgotten_by_removing_it_again(
    broker: Broker, start_agent: Callable[..., AgentProc], mqtt: Callable[..., MqttProbe]
) -> None:
    agent = start_agent("a1")
    online(mqtt, broker, "a1").close()
    agent.proc.stop()
    broker.stop()
    first = run_cli("agents", "remove", "a1", "--data-dir", str(broker.data_dir))
    assert "the broker is not running" in first.stdout
    broker.start()
    assert broker.topics.status("a1") in retained_now(mqtt, broker, "restarted")

    again = run_cli("agents", "remove", "a1", "--data-dir", str(broker.data_dir))
    assert "cleared its retained messages (1)" in again.stdout
    assert "had been revoked before" in again.stdout
    assert broker.topics.status("a1") not in retained_now(mqtt, broker, "forgotten")
