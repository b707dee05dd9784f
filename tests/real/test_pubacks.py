"""A store batch's PUBACKs written as one (maestro.pubacks), against a real Mosquitto:
the broker takes every one of them, so a persistent session gets nothing again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from maestro.pubacks import encode_pubacks, queue_pubacks
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for

COUNT = 20  # within what Mosquitto sends a client unacknowledged (20 in flight)


class ManualAcks:
    """A maestro-like session: persistent, QoS 1, every ack by hand."""

    def __init__(self, broker: Broker, client_id: str) -> None:
        self.received: list[tuple[int, bytes]] = []  # (mid, payload)
        self.lock = threading.Lock()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set("maestro", broker.maestro_password)
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
        client.loop_start()
        wait_for(client.is_connected, 10, "the session to connect")
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.mid, bytes(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_pubacks_encode_as_back_to_back_mqtt_packets() -> None:
    assert encode_pubacks([1, 258]) == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2])


def test_one_write_acknowledges_every_message_of_a_batch(
    broker: Broker, mqtt: Callable[..., MqttProbe]
) -> None:
    topic = broker.topics.metrics("a1")
    session = ManualAcks(broker, "maestro:acks-test")
    subscribed = threading.Event()
    session.client.on_subscribe = lambda *_args: subscribed.set()
    session.client.subscribe(topic, qos=1)
    assert subscribed.wait(10), "no SUBACK"
    broker.add_agent("a1")
    agent = mqtt("a1", broker.password_of("a1"))
    for n in range(COUNT):
        assert agent.publish(topic, f"m{n}".encode()) < 128
    wait_for(lambda: len(session.received) == COUNT, 15, f"{COUNT} messages")
    acked = session.received[: COUNT - 5]  # the last 5 stay unacknowledged
    queue_pubacks(session.client, [mid for mid, _ in acked])
    wait_for(lambda: not session.client._out_packet, 5, "the acks to be written")
    session.close()

    again = ManualAcks(broker, "maestro:acks-test")  # the same session, resumed
    try:
        wait_for(lambda: len(again.received) >= 5, 15, "the unacknowledged messages again")
        time.sleep(1.0)  # anything else the broker would send again comes meanwhile
        with again.lock:
            payloads = sorted(payload for _, payload in again.received)
        assert payloads == sorted(p for _, p in session.received[COUNT - 5 :])
    finally:
        again.close()
