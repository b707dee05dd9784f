"""The broker's dropped-message counter: parsing, baseline, restarts, the warning's pace.

No broker: readings are plain integers, time is a fake clock. The real broker dropping
messages for a stalled client is in tests/real/test_maestro_broker_drops.py.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt
import pytest

from arete.errors import PayloadError
from arete.topics import BROKER_DROPPED, Topics
from maestro.broker_drops import (
    WARN_EVERY_S,
    BrokerDrops,
    DropWarning,
    DropWatch,
    due,
    observe,
    parse_counter,
)
from maestro.ingest import BROKER, BrokerCounterIn, Inbound, Ingest


# -- parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"0", 0), (b"25", 25), (b"18446744073709551615", 2**64 - 1), (b" 7\n", 7)],
)
def test_the_counter_is_read_from_plain_ascii_digits(payload: bytes, value: int) -> None:
    assert parse_counter(payload) == value


@pytest.mark.parametrize(
    "payload",
    [b"", b" ", b"-1", b"+5", b"1_000", b"1e3", b"12.0", b"0x10", b"\xd9\xa1", b"nan", b"1" * 21],
)
def test_anything_but_a_plain_counter_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_counter(payload)
    assert refused.value.code == "not_a_counter"


# -- observe ---------------------------------------------------------------------------
def readings(values: list[int], at: list[float]) -> tuple[DropWatch, list[DropWarning | None]]:
    watch, warnings = DropWatch(), []
    for value, now in zip(values, at, strict=True):
        watch, warning = observe(watch, value, now)
        warnings.append(warning)
    return watch, warnings


def test_the_first_reading_is_a_baseline_not_drops() -> None:
    watch, warnings = readings([5000], [0.0])
    assert (watch.last, watch.total, warnings) == (5000, 0, [None])


def test_an_increase_is_counted_and_warned_about_at_once() -> None:
    watch, warnings = readings([100, 100, 130], [0.0, 10.0, 20.0])
    assert watch.total == 30
    assert warnings == [None, None, DropWarning(dropped=30, total=30)]


def test_a_counter_that_goes_down_means_a_restarted_broker_and_counts_from_zero() -> None:
    watch, _ = readings([100, 150, 0, 40], [0.0, 10.0, 20.0, 30.0])
    assert (watch.last, watch.total) == (40, 50 + 0 + 40)
    watch, _ = readings([100, 150, 7], [0.0, 10.0, 20.0])
    assert watch.total == 50 + 7, "what the new broker dropped before the reading counts"


def test_warnings_come_at_most_once_a_minute_and_lose_no_drops() -> None:
    at = [0.0, 10.0, 20.0, 30.0, 75.0]
    watch, warnings = readings([0, 10, 15, 40, 41], at)
    assert warnings == [
        None,
        DropWarning(dropped=10, total=10),  # t=10: the first, at once
        None,  # t=20: held back
        None,  # t=30: held back
        DropWarning(dropped=5 + 25 + 1, total=41),  # t=75: a minute after t=10
    ]
    assert watch.unreported == 0


def test_drops_held_back_are_flushed_once_their_minute_is_over() -> None:
    watch, _ = readings([0, 10, 12], [0.0, 10.0, 20.0])
    assert due(watch, 10.0 + WARN_EVERY_S - 1)[1] is None
    watch, warning = due(watch, 10.0 + WARN_EVERY_S)
    assert warning == DropWarning(dropped=2, total=12)
    assert due(watch, 1000.0)[1] is None, "nothing new, nothing to say"


def test_no_new_drops_no_warning() -> None:
    _, warnings = readings([3, 3, 3], [0.0, 100.0, 200.0])
    assert warnings == [None, None, None]


# -- the shell's log -------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_warning_says_how_many_and_points_to_a_replica(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="arete.maestro.broker")
    clock = FakeClock()
    drops = BrokerDrops(clock=clock)
    drops.on_reading(0)
    assert not caplog.records, "a zero baseline is not news"
    clock.now = 10.0
    drops.on_reading(25)
    clock.now = 20.0
    drops.on_reading(30)
    assert drops.total == 30
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "dropped 25 messages" in message
    assert "replica" in message
    assert "docs/maestro.md" in message
    clock.now = 10.0 + WARN_EVERY_S
    drops.flush()
    assert "dropped 5 messages" in caplog.records[-1].getMessage()


def test_a_nonzero_baseline_is_logged_once_and_not_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="arete.maestro.broker")
    drops = BrokerDrops(clock=FakeClock())
    drops.on_reading(900)
    drops.on_reading(900)
    assert drops.total == 0
    assert len(caplog.records) == 1
    assert "900" in caplog.records[0].getMessage()
    assert "not counted" in caplog.records[0].getMessage()


# -- the ingest routes $SYS apart from the topic tree -----------------------------------
def message(topic: str, payload: bytes, qos: int = 0) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=7, topic=topic.encode())
    msg.payload = payload
    msg.qos = qos
    return msg


def ingest_for(inbox: list[Inbound], acks: list[tuple[int, int]]) -> Ingest:
    return Ingest(
        Topics("lab"),
        "main",
        submit=lambda rows, ack: None,
        ack=lambda generation, mid: acks.append((generation, mid)),
        inbox=inbox.append,
    )


def test_the_ingest_hands_counter_readings_to_the_loop_without_calling_them_bad() -> None:
    inbox: list[Inbound] = []
    acks: list[tuple[int, int]] = []
    ingest = ingest_for(inbox, acks)
    ingest.handle(message(BROKER_DROPPED, b"42"), 1)
    ingest.handle(message(BROKER_DROPPED, b"43", qos=1), 1)
    assert inbox == [BrokerCounterIn(42), BrokerCounterIn(43)]
    assert acks == [(1, 7)]
    assert ingest.messages[BROKER] == 2
    assert not ingest.errors


def test_a_garbled_counter_is_counted_as_a_decode_error_and_not_passed_on() -> None:
    inbox: list[Inbound] = []
    acks: list[tuple[int, int]] = []
    ingest = ingest_for(inbox, acks)
    ingest.handle(message(BROKER_DROPPED, b"lots", qos=1), 3)
    ingest.handle(message(BROKER_DROPPED, b""), 3)
    assert inbox == []
    assert ingest.errors == {(BROKER, "not_a_counter"): 2}
    assert acks == [(3, 7)], "acknowledged, so never redelivered"


def test_other_sys_topics_are_still_unknown_topics() -> None:
    inbox: list[Inbound] = []
    ingest = ingest_for(inbox, [])
    ingest.handle(message("$SYS/broker/uptime", b"12 seconds"), 1)
    assert inbox == []
    assert ingest.errors == {("unknown", "topic"): 1}
