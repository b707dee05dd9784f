"""Home Assistant discovery against a real broker, read as Home Assistant reads it."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import Message, MqttProbe

PREFIX = "homeassistant"


def _config(message: Message) -> bool:
    return message.topic.startswith(f"{PREFIX}/") and message.topic.endswith("/config")


def test_discovery_announces_an_agent_to_home_assistant_and_removes_it_when_removed(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
) -> None:
    maestro_thread(homeassistant={"enabled": True, "interval_s": 0.2})
    agent = start_agent("a1")
    # Home Assistant connects with the read-only viewer account and reads the configs.
    ha = mqtt("viewer", broker.viewer_password, client_id="viewer:home-assistant")
    ha.subscribe(f"{PREFIX}/#")
    configs = ha.wait_for_messages(lambda m: _config(m) and bool(m.payload), 8, timeout=20)
    by_topic = {m.topic: json.loads(m.payload) for m in configs}
    status = by_topic[f"{PREFIX}/binary_sensor/a1/status/config"]
    assert status["device_class"] == "connectivity"
    cpu = by_topic[f"{PREFIX}/sensor/a1/cpu/config"]
    assert cpu["unit_of_measurement"] == "%"
    assert cpu["device"]["identifiers"] == ["arete_a1"]
    assert cpu["device"]["sw_version"]
    # The entities read the agent's own topics, which the viewer (Home Assistant) may read:
    # the status it points at says online, and a metrics batch carries the CPU.
    ha.subscribe(status["state_topic"])
    ha.subscribe(cpu["state_topic"])
    online = ha.wait_for_message(lambda m: m.topic == status["state_topic"], timeout=10)
    assert json.loads(online.payload)["state"] == "online"
    batch = ha.wait_for_message(lambda m: m.topic == cpu["state_topic"], timeout=10)
    assert 0.0 <= json.loads(batch.payload)["samples"][-1]["cpu"] <= 100.0
    # A late Home Assistant (restarted) still gets the configs: they are retained.
    late = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-late")
    late.subscribe(f"{PREFIX}/#")
    retained = late.wait_for_messages(_config, 8, timeout=10)
    assert all(m.retain for m in retained)

    # Removal: the agent is stopped, revoked and its retained status cleared.
    agent.proc.stop()
    broker.remove_agent("a1")
    admin = mqtt("maestro", broker.maestro_password, client_id="maestro:cleanup")
    admin.publish(broker.topics.status("a1"), b"", retain=True)
    removed = ha.wait_for_messages(lambda m: _config(m) and not m.payload, 8, timeout=20)
    assert {m.topic for m in removed} == set(by_topic)
    after = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-after")
    after.subscribe(f"{PREFIX}/#")
    after.expect_no_message(_config, within=1.0)
