"""Sample numbers through an agent crash: never reused, so nothing is stored over."""

from __future__ import annotations

from collections.abc import Callable

from arete.payloads import decode_metrics
from edge_agent.seq import SEQ_BLOCK
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for


def test_after_a_kill_9_the_agent_numbers_past_every_seq_it_may_have_used(
    broker: Broker, mqtt: Callable[..., MqttProbe], start_agent: Callable[..., AgentProc]
) -> None:
    topic = broker.topics.metrics("a1")
    viewer = mqtt("maestro", broker.maestro_password)
    viewer.subscribe(topic, qos=1)
    env = {"ARETE_AGENT_INTERVAL_S": "0.1"}

    def samples() -> list[tuple[int, float]]:
        return [
            (s.seq, s.ts)
            for m in viewer.messages
            if m.topic == topic
            for s in decode_metrics(m.payload).samples
        ]

    def seqs() -> list[int]:
        return [seq for seq, _ in samples()]

    first = start_agent("a1", env=env)
    wait_for(lambda: len(seqs()) >= 15, 20, "samples before the crash")
    first.kill9()  # no clean close: only the reserved block is on disk
    before = max(seqs())
    count_before = len(seqs())

    again = start_agent("a1", env=env, config=first.config, state_dir=first.state_dir)
    wait_for(lambda: len(seqs()) >= count_before + 10, 20, "samples after the restart")
    after = sorted(s for s in seqs() if s > before)
    assert after, "new samples carry numbers above every one sent before"
    taken_at: dict[int, set[float]] = {}
    for seq, ts in samples():
        taken_at.setdefault(seq, set()).add(ts)
    reused = {seq: ts for seq, ts in taken_at.items() if len(ts) > 1}
    assert not reused, f"one number for two samples (a replay keeps its ts): {reused}"
    assert after[0] - before <= SEQ_BLOCK + 3, "the gap is at most one reserved block"
    assert after == list(range(after[0], after[0] + len(after))), "contiguous again"
    assert again.proc.alive()
