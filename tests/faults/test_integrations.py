"""Integrations across failures: Home Assistant's discovery configs survive a broker
that lost its retained store (kill -9 before its autosave, or its file gone)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from mosquitto.layout import Layout
from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import Message, MqttProbe
from tests.fixtures.procs import port_open, wait_for

CONFIGS = 8  # connectivity + 7 sensors per agent (arete.homeassistant)


def _config(message: Message) -> bool:
    return message.topic.startswith("homeassistant/") and message.topic.endswith("/config")


def test_discovery_is_announced_again_after_the_broker_loses_its_retained_store(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    reliability: Reliability,
) -> None:
    maestro_thread(homeassistant={"enabled": True, "interval_s": 0.5})
    start_agent("a1")
    first = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-1")
    first.subscribe("homeassistant/#")
    before = first.wait_for_messages(lambda m: _config(m) and bool(m.payload), CONFIGS, 20)
    first.close()

    assert broker.proc is not None
    broker.proc.signal(signal.SIGKILL)
    wait_for(lambda: not port_open(broker.port, broker.host), 5, "the broker to die")
    for saved in Layout.at(broker.data_dir).persistence_dir.glob("mosquitto.db*"):
        saved.unlink()  # nothing retained survives: as if killed before its autosave
    broker.start()
    back = time.monotonic()
    # Home Assistant restarted too: it only has what the broker retains.
    late = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-2")
    late.subscribe("homeassistant/#")
    again = late.wait_for_messages(lambda m: _config(m) and bool(m.payload), CONFIGS, 30)
    detection = time.monotonic() - back
    lost = len({m.topic for m in before} - {m.topic for m in again})
    duplicates = len(again) - len({m.topic for m in again})
    reliability.record(
        "broker kill -9 losing its retained store: Home Assistant discovery",
        detection_s=detection,
        lost=lost,
        duplicates=duplicates,
        notes=f"{CONFIGS} retained configs announced again {detection:.1f} s after the restart",
    )
    assert lost == 0
    assert duplicates == 0
    # ... and retained again: a Home Assistant starting now gets them from the broker.
    later = mqtt("viewer", broker.viewer_password, client_id="viewer:ha-3")
    later.subscribe("homeassistant/#")
    kept = later.wait_for_messages(_config, CONFIGS, 10)
    assert all(m.retain and m.payload for m in kept)
