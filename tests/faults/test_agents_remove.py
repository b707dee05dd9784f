"""``arete agents remove`` on an agent whose link is cut (a zombie session the broker
still holds): MQTT clients and Home Assistant forget it, and the agent cannot bring its
status back once the link returns."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.conftest import Reliability
from tests.fixtures.agent import FAST_ENV
from tests.fixtures.broker import Broker
from tests.fixtures.faults import Netns
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import Message, MqttProbe

HA = "homeassistant"
CONFIGS = 8  # connectivity + 7 sensors per agent (arete.homeassistant)


def _config(message: Message) -> bool:
    return message.topic.startswith(f"{HA}/") and message.topic.endswith("/config")


def left_behind(mqtt: Callable[..., MqttProbe], broker: Broker, name: str) -> list[str]:
    """What a client subscribing now still learns about a1 (retained, not empty)."""
    probe = mqtt("viewer", broker.viewer_password, client_id=f"viewer:{name}")
    probe.subscribe(broker.topics.status("a1"))
    probe.subscribe(broker.topics.alerts("a1"))
    probe.subscribe(f"{HA}/+/a1/+/config")
    probe.expect_no_message(lambda m: False, within=1.0)  # the retained ones arrive
    found = sorted({m.topic for m in probe.messages if m.retain and m.payload})
    probe.close()
    return found


def test_an_agent_removed_while_its_link_is_cut_is_forgotten_and_stays_forgotten(  # noqa: PLR0917 - fixtures
    broker: Broker,
    procs: Callable[..., Any],
    netns: Callable[[], Netns],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    reliability: Reliability,
    tmp_path: Path,
) -> None:
    ns = netns()
    broker.stop()
    broker.host = ns.host_ip  # the agent in the namespace reaches the host there
    broker.start()
    maestro = maestro_thread(homeassistant={"enabled": True, "interval_s": 0.2})
    config = broker.add_agent("a1")
    env = {
        **FAST_ENV,
        "ARETE_AGENT_STATE_DIR": str(tmp_path / "a1-state"),
        "ARETE_AGENT_MQTT__HOST": ns.host_ip,
        "ARETE_AGENT_MQTT__KEEPALIVE_S": "60",  # the broker keeps the cut session
    }
    argv = [*ns.prefix(), sys.executable, "-m", "arete_cli", "agent", "run", "--config"]
    procs([*argv, str(config)], "agent-a1-netns", env=env)
    maestro.wait_state("a1", "online", timeout=20)
    ha = mqtt("viewer", broker.viewer_password, client_id="viewer:home-assistant")
    ha.subscribe(f"{HA}/#")
    ha.wait_for_messages(lambda m: _config(m) and bool(m.payload), CONFIGS, 20)

    ns.blackhole()  # no FIN, no RST: the broker still holds the agent's session
    began = time.monotonic()
    done = broker.remove_agent("a1")
    took = time.monotonic() - began
    assert "cleared its retained messages" in done.stdout, done.stdout + done.stderr
    ha.wait_for_messages(lambda m: _config(m) and not m.payload, CONFIGS, 20)
    gone = left_behind(mqtt, broker, "after-remove")

    ns.restore()  # the agent comes back, is refused, and retries: nothing returns
    time.sleep(6)
    still_gone = left_behind(mqtt, broker, "after-restore")
    reliability.record(
        "agent removed while its link is cut (zombie session), then the link returns",
        detection_s=took,
        lost=0,
        duplicates=0,
        notes=f"agents remove took {took:.1f} s; retained about it after: {len(gone)}, "
        f"after the link returned: {len(still_gone)} (status, alerts, {CONFIGS} HA configs)",
    )
    assert gone == []
    assert still_gone == [], "the refused agent cannot bring its status back"
