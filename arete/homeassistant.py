"""Home Assistant MQTT discovery: the config topics and payloads of one agent.

Home Assistant reads retained ``<prefix>/<component>/<node_id>/<object_id>/config``
messages and makes one entity of each. The entities read the agent's own topics
directly (its retained status, its metrics batches): the maestro publishes only the
configs, nothing per sample. An empty retained payload on a config topic removes the
entity. See docs/home-assistant.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from arete.errors import TopicError
from arete.topics import Topics, validate_agent_id

DEFAULT_PREFIX: Final = "homeassistant"
_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")
MANUFACTURER: Final = "Areté"
MODEL: Final = "edge agent"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    object_id: str
    name: str
    field: str  # the sample field the value comes from
    unit: str | None
    device_class: str | None = None
    icon: str | None = None
    precision: int | None = 1


SENSORS: Final = (
    SensorSpec("cpu", "CPU", "cpu", "%", icon="mdi:cpu-64-bit"),
    SensorSpec("mem", "Memory", "mem", "%", icon="mdi:memory"),
    SensorSpec("disk", "Disk (fullest mount)", "disk", "%", icon="mdi:harddisk"),
    SensorSpec("swap", "Swap", "swap", "%", icon="mdi:swap-horizontal"),
    SensorSpec("load1", "Load (1 min)", "load[0]", None, icon="mdi:gauge", precision=2),
    SensorSpec("net_rx", "Network received", "net_rx_bps", "B/s", "data_rate", precision=0),
    SensorSpec("net_tx", "Network sent", "net_tx_bps", "B/s", "data_rate", precision=0),
)
"""The agent's main metrics, one Home Assistant ``sensor`` each."""

STATUS_OBJECT: Final = "status"


def validate_prefix(prefix: str) -> str:
    """The discovery prefix (Home Assistant's ``discovery_prefix``), checked."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise TopicError(
            f"invalid Home Assistant discovery prefix {prefix!r}: use 1-4 levels of letters,"
            " digits, '_' or '-' (e.g. 'homeassistant')"
        )
    return prefix


def node_id(agent_id: str) -> str:
    """Home Assistant's node id for an agent (only ``[A-Za-z0-9_-]``; one-to-one:
    ``_`` becomes ``__`` and ``.`` becomes ``_d``)."""
    return validate_agent_id(agent_id).replace("_", "__").replace(".", "_d")


def config_topic(prefix: str, component: str, agent_id: str, object_id: str) -> str:
    return f"{validate_prefix(prefix)}/{component}/{node_id(agent_id)}/{object_id}/config"


def config_topics(prefix: str, agent_id: str) -> list[str]:
    """Every config topic of one agent (to publish, or to clear on removal)."""
    out = [config_topic(prefix, "binary_sensor", agent_id, STATUS_OBJECT)]
    out += [config_topic(prefix, "sensor", agent_id, spec.object_id) for spec in SENSORS]
    return out


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent_id: str
    host: str | None = None
    version: str | None = None


def device(info: AgentInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifiers": [f"arete_{node_id(info.agent_id)}"],
        "name": info.agent_id if not info.host else f"{info.agent_id} ({info.host})",
        "manufacturer": MANUFACTURER,
        "model": MODEL,
    }
    if info.version:
        out["sw_version"] = info.version
    return out


def _availability(topics: Topics, agent_id: str) -> list[dict[str, str]]:
    return [
        {
            "topic": topics.status(agent_id),
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def status_config(topics: Topics, info: AgentInfo) -> dict[str, Any]:
    """The agent's connectivity (``binary_sensor``, on while its status says online).

    Read from the agent's retained status topic, which the broker's Last Will sets to
    offline when the agent vanishes: right even when no maestro runs.
    """
    node = node_id(info.agent_id)
    return {
        "name": "Connectivity",
        "unique_id": f"arete_{node}_{STATUS_OBJECT}",
        "device_class": "connectivity",
        "state_topic": topics.status(info.agent_id),
        "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": topics.status(info.agent_id),
        "json_attributes_template": (
            "{{ {'host': value_json.host, 'version': value_json.version,"
            " 'labels': value_json.labels} | tojson }}"
        ),
        "device": device(info),
        "origin": {"name": "Areté"},
    }


def sensor_config(topics: Topics, info: AgentInfo, spec: SensorSpec) -> dict[str, Any]:
    """One main metric (``sensor``) read from the newest sample of each metrics batch;
    unavailable while the agent's status is not online."""
    node = node_id(info.agent_id)
    out: dict[str, Any] = {
        "name": spec.name,
        "unique_id": f"arete_{node}_{spec.object_id}",
        "state_topic": topics.metrics(info.agent_id),
        "value_template": f"{{{{ value_json.samples[-1].{spec.field} }}}}",
        "state_class": "measurement",
        "availability": _availability(topics, info.agent_id),
        "device": device(info),
        "origin": {"name": "Areté"},
    }
    if spec.unit is not None:
        out["unit_of_measurement"] = spec.unit
    if spec.device_class is not None:
        out["device_class"] = spec.device_class
    if spec.icon is not None:
        out["icon"] = spec.icon
    if spec.precision is not None:
        out["suggested_display_precision"] = spec.precision
    return out


def discovery_messages(prefix: str, topics: Topics, info: AgentInfo) -> dict[str, bytes]:
    """``{config topic: retained payload}`` announcing one agent."""
    out = {
        config_topic(prefix, "binary_sensor", info.agent_id, STATUS_OBJECT): status_config(
            topics, info
        )
    }
    for spec in SENSORS:
        topic = config_topic(prefix, "sensor", info.agent_id, spec.object_id)
        out[topic] = sensor_config(topics, info, spec)
    return {topic: json.dumps(body, sort_keys=True).encode() for topic, body in out.items()}


def removal_messages(prefix: str, agent_id: str) -> dict[str, bytes]:
    """``{config topic: b""}``: the empty retained payloads that remove an agent."""
    return dict.fromkeys(config_topics(prefix, agent_id), b"")
