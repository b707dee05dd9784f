"""Nothing lost: samples taken during a broker outage arrive afterwards, in order."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from arete.payloads import Metrics, Sample, decode_metrics
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import MqttProbe


def received(probe: MqttProbe, topic: str) -> list[Metrics]:
    return [decode_metrics(m.payload) for m in probe.messages if m.topic == topic]


def persistent_watcher(broker: Broker, mqtt: Callable[..., MqttProbe], topic: str) -> MqttProbe:
    # A persistent session: the broker keeps the subscription and queues QoS 1 messages
    # across its own restart (persistence on), as it will for the maestro.
    probe = mqtt(
        "maestro", broker.maestro_password, client_id="maestro:outbox-watcher", persistent=True
    )
    probe.subscribe(topic, qos=1)
    return probe


def test_broker_outage_samples_arrive_afterwards_in_order_with_original_timestamps(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    topic = broker.topics.metrics("a1")
    watcher = persistent_watcher(broker, mqtt, topic)
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.25"})
    watcher.wait_for_message(lambda m: m.topic == topic, 10)

    broker.stop()
    down_at = time.time()
    outage_s = 3.0
    time.sleep(outage_s)
    broker.start()
    up_at = time.time()

    def caught_up() -> bool:
        samples = [s for m in received(watcher, topic) for s in m.samples]
        return any(s.ts > up_at + 1.0 for s in samples)

    deadline = time.monotonic() + 20
    while not caught_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = received(watcher, topic)
    samples = [s for m in messages for s in m.samples]
    seqs = [s.seq for s in samples]
    assert caught_up(), "live samples resumed after the outage"

    unique = sorted(set(seqs))
    assert unique == list(range(unique[0], unique[-1] + 1)), "no sample is missing"
    first_seen: dict[int, Sample] = {}
    for sample in samples:
        first_seen.setdefault(sample.seq, sample)
    ordered = [first_seen[seq] for seq in unique]
    assert [s.seq for s in samples if s.seq in first_seen] == sorted(seqs), "arrive in order"
    assert all(a.ts < b.ts for a, b in itertools.pairwise(ordered))

    during = [s for s in ordered if down_at + 0.3 < s.ts < up_at - 0.3]
    assert len(during) >= int((outage_s - 0.6) / 0.25) - 1, "samples taken while down arrived"
    replayed = {s.seq for m in messages if m.replay for s in m.samples}
    assert {s.seq for s in during} <= replayed, "they came from the outbox, timestamps kept"


def test_full_outbox_drops_the_oldest_and_reports_the_count(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    topic = broker.topics.metrics("a1")
    watcher = persistent_watcher(broker, mqtt, topic)
    start_agent(
        "a1",
        env={"ARETE_AGENT_INTERVAL_S": "0.1", "ARETE_AGENT_OUTBOX__MAX_SAMPLES": "10"},
    )
    watcher.wait_for_message(lambda m: m.topic == topic, 10)
    broker.stop()
    time.sleep(3.0)  # ~30 samples for an outbox of 10
    broker.start()
    watcher.wait_for_message(lambda m: m.topic == topic and decode_metrics(m.payload).replay, 20)
    replay = next(m for m in received(watcher, topic) if m.replay)
    assert replay.dropped >= 15, "the agent says how many samples it had to drop"
    replayed_seqs = [s.seq for m in received(watcher, topic) if m.replay for s in m.samples]
    newest = max(replayed_seqs)
    assert min(replayed_seqs) > newest - 15, "the newest samples were kept, the oldest dropped"
