"""The maestro's release publisher under a broker kill -9 in the middle of a release:
after the broker is back, the release is on it complete, and an agent account
reassembles every wheel byte-exact (docs/updates.md)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from arete.release import RELEASE_CHUNK_BYTES, ReleaseAssembly
from tests.faults.conftest import Reliability
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import port_open, wait_for
from tests.real.test_release_publish import Releases, agent_probe, fetch, start

Mqtt = Callable[..., MqttProbe]
CHUNKS = 160  # a 40 MiB dependency: publishing it takes long enough to be cut


def test_broker_kill_9_in_the_middle_of_a_release_then_the_release_arrives_whole(
    broker: Broker,
    mqtt: Mqtt,
    maestro_thread: Callable[..., MaestroThread],
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    releases = Releases(tmp_path, broker)
    releases.add(releases.make("0.2.0", dependency_bytes=CHUNKS * RELEASE_CHUNK_BYTES - 7))
    t = broker.topics
    watcher = agent_probe(broker, mqtt, "watcher")
    watcher.subscribe(t.release_filter("0.2.0"))
    maestro = start(maestro_thread, releases)

    def some_chunks_but_no_manifest() -> bool:
        topics = [m.topic for m in watcher.messages]
        assert t.release_manifest("0.2.0") not in topics, "published before the cut"
        return len(topics) >= 10

    wait_for(some_chunks_but_no_manifest, 30, "the release half published", step=0.005)
    assert broker.proc is not None
    broker.proc.signal(signal.SIGKILL)
    wait_for(lambda: not port_open(broker.port, broker.host), 5, "the broker gone")
    time.sleep(2.0)
    broker.start()
    back = time.monotonic()

    assembly: ReleaseAssembly = fetch(
        agent_probe(broker, mqtt, "a1"), broker, "0.2.0", releases.keys
    )
    arrived_s = time.monotonic() - back
    got = {a.name: assembly.artifact_bytes(i) for i, a in enumerate(assembly.manifest.artifacts)}
    wrong = [name for name, data in releases.files.items() if got.get(name) != data]
    assert wrong == []
    publisher = maestro.app.release_publisher
    assert publisher is not None
    assert publisher.published_total >= 1
    reliability.record(
        "broker kill -9 while the maestro publishes a 40 MiB release, restart after 2 s",
        detection_s=arrived_s,
        lost=len(wrong),
        duplicates=0,
        notes=f"release whole on the broker {arrived_s:.1f} s after the restart;"
        f" {os.path.getsize(next((releases.store / '0.2.0').glob('psutil-*'))) >> 20} MiB"
        " republished from disk in 256 KiB chunks",
    )
