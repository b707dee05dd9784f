"""Messages the broker drops for a full queue are reported by the maestro.

The broker here queues at most 20 messages per client and updates its ``$SYS`` counters
every second. A second maestro replica that stopped for good (its persistent session
still holds its share of the shared metrics subscription) is the stalled consumer: the
broker queues its share, then drops the rest without telling the agent. The running
maestro reads Mosquitto's ``$SYS/broker/publish/messages/dropped`` and must report
exactly those drops (Prometheus) and say so in its log.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arete.payloads import Metrics, Sample, encode
from arete.topics import BROKER_DROPPED, Kind
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.mqtt import MqttProbe, accepted
from tests.fixtures.procs import Proc, wait_for

QUEUE_LIMIT = 20
FLOOD = 200
SHARE_GROUP = "maestro"  # the maestro's default ``mqtt.share_group``
SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"
DROPPED_METRIC = re.compile(r"^arete_maestro_broker_dropped_messages_total (\S+)$", re.MULTILINE)


@pytest.fixture
def broker(procs: Callable[..., Proc], tmp_path: Path) -> Iterator[Broker]:
    """This module's broker: a tiny per-client queue and $SYS updates every second."""
    running = make_broker(
        procs, tmp_path / "broker-data", max_queued_messages=QUEUE_LIMIT, sys_interval_s=1
    )
    yield running
    running.stop()


def scrape(maestro: MaestroProc) -> str:
    url = f"http://127.0.0.1:{maestro.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def reported_drops(maestro: MaestroProc) -> int:
    found = DROPPED_METRIC.search(scrape(maestro))
    assert found, "the maestro exports no arete_maestro_broker_dropped_messages_total"
    return int(float(found[1]))


def metrics_payload(seq: int) -> bytes:
    sample = Sample(ts=time.time(), seq=seq, cpu=1.0, mem=2.0)
    return encode(Metrics(epoch=1, seq=seq, samples=[sample]))


def stored_samples(maestro: MaestroProc, agent_id: str) -> int:
    if not maestro.db.exists():
        return 0
    return len(maestro.query(SEQS, (agent_id,)))


def drop_warnings(maestro: MaestroProc) -> list[dict[str, object]]:
    """The maestro's warnings about dropped messages (its log is JSON lines)."""
    lines = [json.loads(line) for line in maestro.output().splitlines() if line.startswith("{")]
    return [
        line for line in lines if line.get("logger") == "arete.maestro.broker" and "dropped" in line
    ]


def test_a_stalled_replicas_dropped_messages_are_counted_and_logged_by_the_maestro(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    t = broker.topics
    maestro = start_maestro()
    assert reported_drops(maestro) == 0

    # A replica that joined the shared metrics subscription, then stopped for good: the
    # broker keeps sending it its share and queues it for its persistent session.
    stalled_id = "maestro:stalled"
    stalled = mqtt("maestro", broker.maestro_password, client_id=stalled_id, persistent=True)
    stalled.subscribe(t.shared(SHARE_GROUP, Kind.METRICS), qos=1)
    stalled.close()

    broker.add_agent("a1")
    agent = mqtt("a1", broker.password_of("a1"))
    for seq in range(1, FLOOD + 1):  # every one PUBACKed: the agent believes it delivered
        assert accepted(agent.publish(t.metrics("a1"), metrics_payload(seq)))

    # Each sample went to one replica: the live one stored it, the stalled one queued it
    # (QUEUE_LIMIT at most), or the broker dropped it; the maestro must count the last.
    def accounted() -> bool:
        return stored_samples(maestro, "a1") + QUEUE_LIMIT + reported_drops(maestro) == FLOOD

    wait_for(accounted, 10, "stored + queued + reported drops to make up every sample")
    dropped = reported_drops(maestro)
    assert dropped > 0

    # The broker's own count says the same (the maestro account may read it).
    watcher = mqtt("maestro", broker.maestro_password)
    watcher.subscribe(BROKER_DROPPED, qos=0)
    counter = watcher.wait_for_message(lambda m: m.topic == BROKER_DROPPED)
    assert int(counter.payload) == dropped

    # The stalled replica's session really held QUEUE_LIMIT of them.
    resumed = mqtt("maestro", broker.maestro_password, client_id=stalled_id, persistent=True)
    resumed.wait_for_messages(lambda m: m.topic == t.metrics("a1"), QUEUE_LIMIT)
    time.sleep(0.3)  # and no more
    assert len([m for m in resumed.messages if m.topic == t.metrics("a1")]) == QUEUE_LIMIT

    wait_for(lambda: bool(drop_warnings(maestro)), 5, "the maestro's warning")
    first = drop_warnings(maestro)[0]
    assert first["level"] == "warning"
    assert 0 < int(str(first["dropped"])) <= dropped  # the first may precede the last drops
    assert f"the broker dropped {first['dropped']} messages" in str(first["event"])
    assert "add a maestro replica" in str(first["event"])
    assert "docs/maestro.md" in str(first["event"])
    text = scrape(maestro)
    assert 'arete_maestro_messages_total{kind="broker"}' in text
    assert 'arete_maestro_decode_errors_total{kind="broker"' not in text
