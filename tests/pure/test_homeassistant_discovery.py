"""Home Assistant discovery payloads: the fields HA's MQTT discovery documents."""

from __future__ import annotations

import json
import re

import pytest

from arete.errors import TopicError
from arete.homeassistant import (
    SENSORS,
    AgentInfo,
    config_topics,
    discovery_messages,
    node_id,
    removal_messages,
    validate_prefix,
)
from arete.payloads import Sample, encode
from arete.topics import Topics

# HA: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids [a-zA-Z0-9_-]+
TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$")
TEMPLATE = re.compile(r"^\{\{ value_json\.samples\[-1\]\.(\w+)(\[0\])? \}\}$")


def _messages() -> dict[str, dict[str, object]]:
    info = AgentInfo("web.01", "host-a", "1.2.3")
    raw = discovery_messages("homeassistant", Topics("arete"), info)
    return {topic: json.loads(payload) for topic, payload in raw.items()}


def test_every_config_topic_follows_has_discovery_layout_and_ids_are_unique() -> None:
    messages = _messages()
    assert all(TOPIC.fullmatch(topic) for topic in messages)
    assert len(messages) == 1 + len(SENSORS)
    unique = [body["unique_id"] for body in messages.values()]
    assert len(set(unique)) == len(unique)
    for body in messages.values():
        assert body["device"] == {
            "identifiers": ["arete_web_d01"],
            "name": "web.01 (host-a)",
            "manufacturer": "Areté",
            "model": "edge agent",
            "sw_version": "1.2.3",
        }


def test_connectivity_reads_the_agents_retained_status() -> None:
    body = _messages()["homeassistant/binary_sensor/web_d01/status/config"]
    assert body["device_class"] == "connectivity"
    assert body["state_topic"] == "arete/status/web.01"
    assert body["value_template"] == "{{ 'ON' if value_json.state == 'online' else 'OFF' }}"
    assert (body["payload_on"], body["payload_off"]) == ("ON", "OFF")


def test_sensors_have_units_classes_and_availability_from_the_status() -> None:
    messages = _messages()
    cpu = messages["homeassistant/sensor/web_d01/cpu/config"]
    assert cpu["unit_of_measurement"] == "%"
    assert cpu["state_class"] == "measurement"
    assert cpu["state_topic"] == "arete/metrics/web.01"
    assert cpu["availability"] == [
        {
            "topic": "arete/status/web.01",
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    rx = messages["homeassistant/sensor/web_d01/net_rx/config"]
    assert (rx["device_class"], rx["unit_of_measurement"]) == ("data_rate", "B/s")


def test_each_value_template_finds_its_value_in_a_real_metrics_batch() -> None:
    sample = Sample(ts=1.0, seq=1, cpu=12.5, mem=40.0, disk=70.0, swap=2.0, load=(0.5, 0, 0))
    batch = json.loads(b'{"samples": [' + encode(sample) + b"]}")
    newest = batch["samples"][-1]
    expected = {"cpu": 12.5, "mem": 40.0, "disk": 70.0, "swap": 2.0, "load1": 0.5}
    for topic, body in _messages().items():
        if "/sensor/" not in topic:
            continue
        found = TEMPLATE.fullmatch(str(body["value_template"]))
        assert found, body["value_template"]
        value = newest.get(found.group(1), 0.0)  # omit_defaults: 0 rates are left out
        value = value[0] if found.group(2) else value
        object_id = topic.split("/")[3]
        assert value == expected.get(object_id, 0.0), topic


def test_removal_clears_every_config_topic_with_an_empty_payload() -> None:
    removal = removal_messages("homeassistant", "web.01")
    assert set(removal) == set(_messages())
    assert set(removal.values()) == {b""}
    assert set(config_topics("homeassistant", "web.01")) == set(removal)


def test_node_ids_are_one_to_one_and_prefixes_are_checked() -> None:
    assert node_id("a.b") != node_id("a_b")
    assert node_id("a_db") != node_id("a.b")
    assert validate_prefix("ha/test") == "ha/test"
    for bad in ("", "home assistant", "ha/#", "a/+/b", "/lead"):
        with pytest.raises(TopicError):
            validate_prefix(bad)
