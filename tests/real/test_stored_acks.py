"""The stored acknowledgement on a real broker: what the maestro confirms, to whom, and an
agent without a maestro still flowing on PUBACKs."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from collections.abc import Callable

from arete.payloads import MaestroState, MaestroStatus, decode_metrics, encode
from arete.stored import Stored, decode_stored
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for

SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"
NOT_AUTHORIZED = 135


def acks(probe: MqttProbe, topic: str) -> list[Stored]:
    return [decode_stored(m.payload) for m in probe.messages if m.topic == topic]


def confirmed(stored: list[Stored]) -> set[int]:
    return {seq for ack in stored for first, last in ack.ranges for seq in range(first, last + 1)}


def outbox_len(agent: AgentProc) -> int:
    conn = sqlite3.connect(f"file:{agent.state_dir / 'agent-state.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def test_the_maestro_confirms_every_stored_sample_to_its_agent_and_nobody_else(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    topic = broker.topics.stored("a1")
    watcher = mqtt("maestro", broker.maestro_password)
    watcher.subscribe(topic)
    maestro = start_maestro()
    broker.add_agent("a2")
    other = mqtt("a2", broker.password_of("a2"))
    other.subscribe(topic)  # the ACL lets the SUBACK through but delivers nothing
    agent = start_agent("a1")
    # At once for 10 s after the maestro connects, then merged within 5 s (pure tests).
    wait_for(lambda: len(confirmed(acks(watcher, topic))) >= 12, 20, "stored acknowledgements")

    stored = [row[0] for row in maestro.query(SEQS, ("a1",))]
    seen = acks(watcher, topic)
    assert {ack.replica for ack in seen} == {"main"}
    assert all(abs(ack.ts - time.time()) < 30 for ack in seen), "the maestro's clock"
    assert confirmed(seen) <= set(stored), "nothing confirmed that is not stored"
    assert min(stored) in confirmed(seen)
    assert outbox_len(agent) == 0, "confirmed samples do not pile up in the outbox"
    assert (agent.state_dir / "maestro-acks").exists(), "the agent remembers a maestro"
    assert not [m for m in other.messages if m.topic == topic], "a2 reads no a1 ack"
    forged = mqtt("a1", broker.password_of("a1")).publish(topic, b"{}")
    assert forged == NOT_AUTHORIZED, "only the maestro writes acknowledgements"
    url = f"http://127.0.0.1:{maestro.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        scraped = answer.read().decode()
    published = [
        line for line in scraped.splitlines() if line.startswith("arete_maestro_stored_acks_total ")
    ]
    assert published, "counted for Prometheus"
    assert float(published[0].split()[1]) >= len(seen)


def test_two_replicas_each_confirm_the_samples_they_stored(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    topic = broker.topics.stored("a1")
    watcher = mqtt("maestro", broker.maestro_password)
    watcher.subscribe(topic)
    replicas = {r: start_maestro(r) for r in ("r1", "r2")}
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.2"})

    def both_confirmed() -> bool:
        return {ack.replica for ack in acks(watcher, topic)} == {"r1", "r2"}

    wait_for(both_confirmed, 20, "acknowledgements from both replicas")
    for name, replica in replicas.items():
        mine = confirmed([ack for ack in acks(watcher, topic) if ack.replica == name])
        stored_here = {row[0] for row in replica.query(SEQS, ("a1",))}
        assert mine <= stored_here, f"{name} confirms only what it stored itself"


def test_an_agent_no_maestro_ever_confirmed_keeps_sending_live_on_pubacks(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
) -> None:
    topic = broker.topics.metrics("a1")
    watcher = mqtt("maestro", broker.maestro_password)
    watcher.subscribe(topic)
    # A maestro too old to confirm (agents upgraded first) is online: its status alone
    # must not make the agent wait for confirmations that never come.
    old = MaestroStatus(replica="old", state=MaestroState.ONLINE, ts=time.time())
    watcher.publish(broker.topics.maestro("old"), encode(old), retain=True)
    agent = start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.1"})

    def live_samples() -> int:
        return sum(
            len(metrics.samples)
            for metrics in (decode_metrics(m.payload) for m in watcher.messages if m.topic == topic)
            if not metrics.replay
        )

    # Past the 30 live samples that may await confirmation: nobody confirms here.
    wait_for(lambda: live_samples() >= 60, 20, "60 live samples")
    assert outbox_len(agent) == 0
    assert not (agent.state_dir / "maestro-acks").exists()
