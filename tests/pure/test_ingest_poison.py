"""The ingest's own defences: sample times against its clock, "latest" by receive order.

No broker: messages are built in memory and the clock is fake. The same attacks end to
end, with real agents, a real broker and a real maestro, are in tests/faults/test_poison.py.
"""

from __future__ import annotations

import json
from typing import Any

import paho.mqtt.client as paho

from arete.payloads import MAX_FUTURE_S, MAX_PAST_S
from arete.topics import Topics
from maestro.ingest import Ingest
from maestro.store.rows import SampleRow

NOW = 1_764_050_000.0
TOPICS = Topics("lab")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Fake:
    """What the ingest talks to: the store's submit, the broker's acks, the loop."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.submitted: list[list[SampleRow]] = []
        self.acks: list[int] = []
        self.ingest = Ingest(
            TOPICS,
            "main",
            submit=self.submit,
            ack=lambda generation, mid: self.acks.append(mid),
            inbox=lambda item: None,
            clock=self.clock,
        )
        self.mid = 0

    def submit(self, rows: list[SampleRow], on_stored: Any) -> None:
        self.submitted.append(rows)
        if on_stored is not None:
            on_stored()

    def send(self, agent: str, *samples: dict[str, Any], replay: bool = False) -> int:
        body = {"epoch": 5, "seq": samples[0]["seq"], "samples": list(samples), "replay": replay}
        self.mid += 1
        message = paho.MQTTMessage(self.mid, TOPICS.metrics(agent).encode())
        message.payload = json.dumps(body).encode()
        message.qos = 1
        self.ingest.handle(message, 1)
        return self.mid

    def stored_seqs(self) -> list[int]:
        return [row[1] for rows in self.submitted for row in rows]


def sample(seq: int, ts: float = NOW, mem: float = 40.0) -> dict[str, Any]:
    return {"ts": ts, "seq": seq, "cpu": 10.0, "mem": mem}


def test_samples_stamped_too_far_from_the_maestros_clock_are_dropped_alone() -> None:
    fake = Fake()
    mid = fake.send(
        "a1",
        sample(1),
        sample(2, ts=NOW + MAX_FUTURE_S + 60),  # a day and a minute ahead
        sample(3, ts=4_102_444_800.0),  # the year 2100
        sample(4, ts=NOW - MAX_PAST_S - 60),
        sample(5, ts=NOW + 2 * 3600),  # an agent two hours ahead is kept
    )
    assert fake.stored_seqs() == [1, 5]
    assert fake.acks == [mid], "acknowledged once, after the good samples were stored"
    assert fake.ingest.errors == {("metrics", "ts_future"): 2, ("metrics", "ts_past"): 1}


def test_a_message_whose_samples_are_all_refused_is_acknowledged_and_stores_nothing() -> None:
    fake = Fake()
    mid = fake.send("a1", sample(1, ts=4_102_444_800.0))
    assert fake.submitted == []
    assert fake.acks == [mid]
    assert "a1" not in fake.ingest.latest
    assert "a1" not in fake.ingest.contacts, "a refused sample is no sign of life"


def test_latest_is_the_sample_received_last_not_the_highest_seq() -> None:
    fake = Fake()
    fake.send("a1", sample(10, mem=40.0))
    fake.clock.now += 1
    fake.send("a1", sample(2**53 - 1, mem=99.9))  # forged: the largest seq in bounds
    fake.clock.now += 1
    fake.send("a1", sample(11, mem=41.0))
    rx, row = fake.ingest.latest["a1"]
    assert row[1] == 11
    assert rx == NOW + 2, "the maestro's receive time, not the agent's ts"


def test_a_replay_never_replaces_a_live_latest_but_stands_in_before_one() -> None:
    fake = Fake()
    fake.send("a1", sample(1, ts=NOW - 600), sample(2, ts=NOW - 599), replay=True)
    assert fake.ingest.latest["a1"][1][1] == 2, "better than nothing until a live one"
    fake.send("a1", sample(50))
    fake.send("a1", sample(3, ts=NOW - 598), replay=True)
    assert fake.ingest.latest["a1"][1][1] == 50
