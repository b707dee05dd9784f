"""Release topics on a real broker: who may read and write them, and that 256 KiB
retained chunks are delivered and survive a broker restart (docs/updates.md)."""

from __future__ import annotations

import os
from collections.abc import Callable

from arete.release import RELEASE_CHUNK_BYTES
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import NOT_AUTHORIZED, MqttProbe, accepted

Mqtt = Callable[..., MqttProbe]
MANIFEST = b'{"manifest":{},"sig":""}'


def publish_release(broker: Broker, mqtt: Mqtt, version: str) -> tuple[bytes, bytes]:
    t = broker.topics
    maestro = mqtt("maestro", broker.maestro_password)
    chunk = os.urandom(RELEASE_CHUNK_BYTES)
    assert accepted(maestro.publish(t.release_chunk(version, 0, 0), chunk, retain=True))
    assert accepted(maestro.publish(t.release_manifest(version), MANIFEST, retain=True))
    maestro.close()
    return chunk, MANIFEST


def test_agents_and_the_viewer_receive_retained_releases_but_cannot_publish_them(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    chunk, manifest = publish_release(broker, mqtt, "0.2.0")
    broker.add_agent("a1")
    readers = [mqtt("a1", broker.password_of("a1")), mqtt("viewer", broker.viewer_password)]
    for reader in readers:
        reader.subscribe(t.release_filter("0.2.0"))
        got = reader.wait_for_messages(lambda m: m.topic.startswith(t.all_releases()[:-1]), 2)
        assert {m.topic: m.payload for m in got} == {
            t.release_chunk("0.2.0", 0, 0): chunk,
            t.release_manifest("0.2.0"): manifest,
        }
        assert all(m.retain for m in got)
        forged = [t.release_manifest("0.2.0"), t.release_chunk("0.2.0", 0, 0)]
        forged.append(t.release_manifest("9.9"))
        for topic in forged:
            assert reader.publish(topic, b"forged", retain=True) == NOT_AUTHORIZED, topic
            assert reader.publish(topic, b"", retain=True) == NOT_AUTHORIZED, topic

    fresh = mqtt("viewer", broker.viewer_password)
    fresh.subscribe(t.all_releases())
    fresh.wait_for_messages(lambda m: m.retain, 2)
    fresh.expect_no_message(lambda m: m.payload in (b"forged", b""), within=0.3)


def test_a_full_size_retained_chunk_survives_a_broker_restart(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    chunk, _ = publish_release(broker, mqtt, "0.3")
    broker.restart()
    broker.add_agent("a1")
    reader = mqtt("a1", broker.password_of("a1"))
    reader.subscribe(t.release_chunk("0.3", 0, 0))
    got = reader.wait_for_message(lambda m: m.topic == t.release_chunk("0.3", 0, 0))
    assert got.retain
    assert got.payload == chunk
