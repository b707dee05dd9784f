"""The maestro publishes its release store on a real broker (docs/updates.md): releases
made with the CLI reach an agent account byte-exact, removed ones disappear from the
broker, tampered or foreign ones are never published."""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from arete.release import (
    RELEASE_CHUNK_BYTES,
    ReleaseAssembly,
    keyring,
    load_public_key,
    verify_release,
)
from arete_cli.main import app
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import Message, MqttProbe
from tests.fixtures.procs import wait_for

Mqtt = Callable[..., MqttProbe]
StartMaestro = Callable[..., MaestroThread]


def fake_wheels(folder: Path, version: str, dependency_bytes: int) -> dict[str, bytes]:
    """An arete wheel carrying ``version`` in its metadata, and a large 'dependency'."""
    folder.mkdir(parents=True)
    arete = folder / f"arete-{version}-py3-none-any.whl"
    with zipfile.ZipFile(arete, "w") as archive:
        archive.writestr(
            f"arete-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: arete\nVersion: {version}\n\n",
        )
    dependency = folder / "psutil-6.1.0-cp36-abi3-manylinux_2_17_x86_64.whl"
    dependency.write_bytes(os.urandom(dependency_bytes))
    return {p.name: p.read_bytes() for p in (arete, dependency)}


def run_cli(*args: str) -> str:
    """``arete ARGS`` in this process (the real commands, without a new interpreter)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"arete {' '.join(args)}: {result.output}"
    return result.stdout


class Releases:
    """A release key, and releases made and added with the real CLI."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp = tmp
        tmp.mkdir(exist_ok=True)
        self.broker = broker
        self.key = tmp / "release.key"
        run_cli("release", "key", "generate", "--out", str(self.key))
        self.public = run_cli("release", "key", "public", str(self.key)).split()[0]
        self.keys = keyring([load_public_key(self.public)])
        self.store = broker.data_dir / "releases"

    def make(self, version: str, dependency_bytes: int = 2 * RELEASE_CHUNK_BYTES + 1000) -> Path:
        wheels = fake_wheels(self.tmp / f"wheels-{version}", version, dependency_bytes)
        self.files = wheels
        run_cli(
            "release", "create", "--wheels", str(self.tmp / f"wheels-{version}"),
            "--version", version, "--key", str(self.key), "--min-from", "0.1",
            "--expires-in", "1d", "--out", str(self.tmp / "out"),
        )  # fmt: skip
        return self.tmp / "out" / version

    def add(self, made: Path) -> None:
        run_cli(
            "release", "add", str(made), "--data-dir", str(self.broker.data_dir),
            "--public-key", self.public,
        )  # fmt: skip


@pytest.fixture
def releases(tmp_path: Path, broker: Broker) -> Releases:
    return Releases(tmp_path, broker)


def start(maestro_thread: StartMaestro, releases: Releases) -> MaestroThread:
    return maestro_thread(releases={"public_keys": [releases.public], "scan_interval_s": 1})


def agent_probe(broker: Broker, mqtt: Mqtt, name: str = "a1") -> MqttProbe:
    broker.add_agent(name)
    return mqtt(name, broker.password_of(name))


def fetch(
    probe: MqttProbe, broker: Broker, version: str, keys: dict[str, Ed25519PublicKey]
) -> ReleaseAssembly:
    """What an agent does: subscribe, verify the manifest, reassemble every chunk."""
    t = broker.topics
    probe.subscribe(t.release_filter(version))
    manifest_msg = probe.wait_for_message(
        lambda m: m.topic == t.release_manifest(version) and bool(m.payload), timeout=20
    )
    manifest = verify_release(
        manifest_msg.payload,
        keys,
        now=time.time(),
        running_version="0.1.0",
    )
    assembly = ReleaseAssembly(manifest)

    def chunks_in() -> bool:
        for message in probe.messages:
            where = t.parse_release(message.topic)
            if where.artifact is not None and where.chunk is not None:
                assert assembly.feed(where.artifact, where.chunk, message.payload), message.topic
        return assembly.complete()

    wait_for(chunks_in, 20, "every chunk of the release")
    return assembly


def test_a_release_made_with_the_cli_reaches_an_agent_byte_exact(
    broker: Broker, mqtt: Mqtt, maestro_thread: StartMaestro, releases: Releases
) -> None:
    releases.add(releases.make("0.2.0"))
    maestro = start(maestro_thread, releases)

    assembly = fetch(agent_probe(broker, mqtt), broker, "0.2.0", releases.keys)

    got = {a.name: assembly.artifact_bytes(i) for i, a in enumerate(assembly.manifest.artifacts)}
    assert got == releases.files
    assert sum(len(v) for v in got.values()) > 2 * RELEASE_CHUNK_BYTES  # several chunks
    wait_for(
        lambda: (
            [(r.version, r.published) for r in maestro.app.releases.releases()] == [("0.2.0", True)]
        ),
        10,
        "the store to say published",
    )


def test_every_chunk_is_on_the_broker_before_the_manifest(
    broker: Broker, mqtt: Mqtt, maestro_thread: StartMaestro, releases: Releases
) -> None:
    watcher = agent_probe(broker, mqtt)
    watcher.subscribe(broker.topics.release_filter("0.3"))
    releases.add(releases.make("0.3"))
    start(maestro_thread, releases)

    manifest_topic = broker.topics.release_manifest("0.3")
    watcher.wait_for_message(lambda m: m.topic == manifest_topic, timeout=20)
    order = [m.topic for m in watcher.messages]
    assert order[-1] == manifest_topic
    assert len(order) == 1 + 3 + 1  # arete wheel: 1 chunk, dependency: 3 chunks, manifest


def is_cleared(message: Message) -> bool:
    return message.payload == b""


def test_removing_a_release_from_the_store_clears_its_retained_topics(
    broker: Broker, mqtt: Mqtt, maestro_thread: StartMaestro, releases: Releases
) -> None:
    releases.add(releases.make("0.2.0"))
    maestro = start(maestro_thread, releases)
    fetch(agent_probe(broker, mqtt), broker, "0.2.0", releases.keys)

    shutil.rmtree(releases.store / "0.2.0")
    publisher = maestro.app.release_publisher
    assert publisher is not None
    publisher.wake()
    wait_for(lambda: "0.2.0" not in publisher.broker_versions(), 15, "the manifest cleared")
    wait_for(lambda: publisher.cleared_total == 1, 15, "the chunks cleared")

    late = agent_probe(broker, mqtt, "a2")
    late.subscribe(broker.topics.all_releases())
    late.expect_no_message(lambda m: True, within=1.0)
    assert maestro.app.releases.releases() == []


def test_tampered_and_foreign_releases_are_not_published(
    broker: Broker,
    mqtt: Mqtt,
    maestro_thread: StartMaestro,
    releases: Releases,
    tmp_path: Path,
) -> None:
    releases.add(releases.make("0.2.0"))
    wheel = next((releases.store / "0.2.0").glob("psutil-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[RELEASE_CHUNK_BYTES + 5] ^= 0xFF  # same size, one bit pattern changed
    wheel.write_bytes(bytes(data))
    other = Releases(tmp_path / "other", broker)
    shutil.copytree(other.make("0.4"), releases.store / "0.4")  # signed by an unknown key
    releases.add(releases.make("0.3"))  # the good one, to know the publisher ran

    maestro = start(maestro_thread, releases)
    probe = agent_probe(broker, mqtt)
    probe.subscribe(broker.topics.all_releases())
    probe.wait_for_message(lambda m: m.topic == broker.topics.release_manifest("0.3"), timeout=20)

    refused = {r.name: r.code for r in maestro.app.releases.refused()}
    assert refused == {"0.2.0": "tampered", "0.4": "unknown_key"}
    assert [r.version for r in maestro.app.releases.releases()] == ["0.3"]
    versions = {broker.topics.parse_release(m.topic).version for m in probe.messages}
    assert versions == {"0.3"}


def test_a_second_replica_finds_the_release_on_the_broker_and_publishes_nothing(
    broker: Broker, mqtt: Mqtt, maestro_thread: StartMaestro, releases: Releases
) -> None:
    releases.add(releases.make("0.2.0"))
    first = start(maestro_thread, releases)
    first_publisher = first.app.release_publisher
    assert first_publisher is not None
    wait_for(lambda: first_publisher.published_total == 1, 20, "the first replica's publish")

    watcher = agent_probe(broker, mqtt)
    watcher.subscribe(broker.topics.release_filter("0.2.0"))
    watcher.wait_for_messages(lambda m: m.retain, 5)  # what is retained: 4 chunks + manifest
    second = maestro_thread("r2", releases={"public_keys": [releases.public]})
    second_publisher = second.app.release_publisher
    assert second_publisher is not None
    wait_for(lambda: second_publisher.rounds >= 1, 20, "the second replica's first round")

    assert second_publisher.published_total == 0
    assert [(r.version, r.published) for r in second.app.releases.releases()] == [("0.2.0", True)]
    watcher.expect_no_message(lambda m: not m.retain, within=0.5)  # nothing sent again
