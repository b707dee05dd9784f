"""MQTT over websockets for browsers and apps: on loopback only, and with TLS."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.procs import Proc


def listening_addresses(port: int) -> set[str]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        local = line.split()[3]
        address, _, bound = local.rpartition(":")
        if bound == str(port):
            found.add(address)
    return found


def _ws_status(broker: Broker, agent_id: str, *, ca: Path | None = None) -> dict[str, object]:
    assert broker.ws_port is not None
    topic = broker.topics.status(agent_id)
    return ws_status_of(broker.ws_port, broker.viewer_password, topic, ca=ca)


def ws_status_of(
    port: int, viewer_password: str, topic: str, *, ca: Path | None = None
) -> dict[str, object]:
    """A retained status, read as the viewer over (secure) websockets."""
    got: list[bytes] = []
    done = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="viewer:ws-test",
        protocol=paho.MQTTv5,
        transport="websockets",
    )
    client.username_pw_set("viewer", viewer_password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if message.payload:
            got.append(bytes(message.payload))
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("localhost" if ca else "127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(15), "no retained status over websockets"
    finally:
        client.loop_stop()
        client.disconnect()
    status: dict[str, object] = json.loads(got[0])
    return status


@pytest.fixture
def wss_broker(procs: Callable[..., Proc], tmp_path: Path) -> Iterator[Broker]:
    running = make_broker(procs, tmp_path / "wss-broker-data", wss=True)
    yield running
    running.stop()


def test_the_websockets_listener_binds_loopback_only_and_serves_the_viewer(
    ws_broker: Broker, start_agent: Callable[..., AgentProc]
) -> None:
    assert ws_broker.ws_port is not None
    assert listening_addresses(ws_broker.ws_port) == {"127.0.0.1"}
    config = ws_broker.config_file.read_text()
    assert re.search(rf"^listener {ws_broker.ws_port} 127\.0\.0\.1$", config, re.M)
    start_agent("a1", config=ws_broker.add_agent("a1"))
    assert _ws_status(ws_broker, "a1")["state"] == "online"


def test_the_deployed_broker_serves_websockets_with_tls(
    wss_broker: Broker, start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1", config=wss_broker.add_agent("a1"))
    assert _ws_status(wss_broker, "a1", ca=wss_broker.ca_file)["state"] == "online"
    # A plain websockets client gets nowhere on the TLS port.
    with pytest.raises((AssertionError, OSError, paho.WebsocketConnectionError)):
        _ws_status(wss_broker, "a1")
