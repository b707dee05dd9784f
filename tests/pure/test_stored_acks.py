"""The end-to-end acknowledgement: the ``stored`` contract, and the agent's bookkeeping of
what it sent and the maestro has not yet confirmed stored (edge_agent.delivery)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arete.errors import PayloadError
from arete.payloads import MaestroState, MaestroStatus, encode, encode_metrics
from arete.stored import (
    MAX_RANGES,
    MAX_SEQ,
    Stored,
    decode_stored,
    salvage_seqs,
    seq_ranges,
)
from arete.topics import Kind, Topics
from edge_agent.delivery import (
    ACK_TIMEOUT_S,
    RESEND_GRACE_S,
    AckMode,
    HubWatch,
    Unconfirmed,
)
from edge_agent.state import OutboxRow
from maestro.stored_acks import MERGE_MAX, PROMPT_S, StoredAcks


def row(seq: int) -> OutboxRow:
    return OutboxRow(seq, b'{"seq":%d}' % seq)


# -- contract ----------------------------------------------------------------------------
def test_the_stored_topic_is_the_agents_own_and_parses_back() -> None:
    topics = Topics("lab")
    assert topics.stored("a1") == "lab/stored/a1"
    parsed = topics.parse("lab/stored/a1")
    assert (parsed.kind, parsed.agent_id) == (Kind.STORED, "a1")


@given(st.sets(st.integers(min_value=0, max_value=500), max_size=200))
def test_seq_ranges_cover_exactly_the_seqs(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    covered = [s for first, last in ranges for s in range(first, last + 1)]
    assert covered == sorted(seqs), "every seq once, in order, nothing else"
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(ranges)), "merged"


def test_a_stored_ack_round_trips_with_the_maestros_clock() -> None:
    sent = Stored(replica="main", ts=1_764_050_000.5, ranges=[(1, 300), (302, 302)])
    received = decode_stored(encode(sent))
    assert received == sent
    assert received.ts == 1_764_050_000.5


@pytest.mark.parametrize(
    "payload",
    [
        b'{"schema":1,"replica":"m","ts":1.0,"ranges":[]}',  # nothing confirmed: not an ack
        b'{"schema":1,"replica":"m","ts":1.0,"ranges":[[5,4]]}',  # reversed
        b'{"schema":1,"replica":"m","ts":1.0,"ranges":[[-1,4]]}',
        b'{"schema":1,"replica":"m","ts":1.0,"ranges":[[0,%d]]}' % (MAX_SEQ + 1),
        b'{"schema":2,"replica":"m","ts":1.0,"ranges":[[1,2]]}',
        b'{"schema":1,"replica":"m","ts":1e300,"ranges":[[1,2]]}',
        b"[1,2]",
    ],
)
def test_a_malformed_stored_ack_is_refused_with_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_stored(payload)


def test_too_many_ranges_are_refused() -> None:
    ranges = ",".join(f"[{2 * i},{2 * i}]" for i in range(MAX_RANGES + 1))
    with pytest.raises(PayloadError):
        decode_stored(b'{"schema":1,"replica":"m","ts":1.0,"ranges":[%s]}' % ranges.encode())


def test_the_seqs_of_an_undecodable_metrics_message_are_salvaged_for_the_ack() -> None:
    bad_sample = b'{"seq":7,"ts":-5,"cpu":900}'  # fails validation, still names its seq
    payload = encode_metrics(epoch=1, samples=[b'{"seq":6}', bad_sample], first_seq=6)
    assert salvage_seqs(payload, max_bytes=1 << 20) == [6, 7]
    assert salvage_seqs(b"not json", max_bytes=1 << 20) == []
    assert salvage_seqs(payload, max_bytes=10) == [], "too large: not even parsed"


# -- the agent's unconfirmed samples -----------------------------------------------------
def test_a_live_sample_is_kept_until_the_maestro_confirms_it() -> None:
    pending = Unconfirmed()
    pending.sent_live(row(1), now=0.0)
    pending.sent_live(row(2), now=0.5)
    assert pending.confirm([(1, 1)]) == 1
    assert list(pending.live) == [2]
    assert pending.confirm([(1, 1)]) == 0, "a repeated ack changes nothing"


def test_a_replay_batch_ends_only_when_every_sample_is_confirmed() -> None:
    pending = Unconfirmed()
    pending.sent_batch([10, 11, 12], now=0.0)
    pending.confirm([(10, 11)])
    assert pending.replay_count == 1
    pending.confirm([(12, 12)])
    assert pending.replay_count == 0


def test_one_ack_can_cover_live_samples_and_replay_batches_together() -> None:
    pending = Unconfirmed()
    pending.sent_batch(range(1, 301), now=0.0)
    pending.sent_live(row(301), now=0.0)
    assert pending.confirm([(0, 10**15)]) == 301, "a huge range is handled cheaply"
    assert not pending


def test_nothing_is_due_before_the_timeout_and_everything_after() -> None:
    pending = Unconfirmed()
    pending.sent_live(row(1), now=100.0)
    assert not pending.due(100.0 + ACK_TIMEOUT_S - 0.1)
    assert pending.due(100.0 + ACK_TIMEOUT_S)


def test_the_timeout_doubles_while_nothing_is_confirmed_and_resets_on_an_ack() -> None:
    pending = Unconfirmed(timeout_s=10.0, max_timeout_s=35.0)
    pending.sent_live(row(1), now=0.0)
    assert pending.take_all(timed_out=True) == [row(1)]
    assert pending.current_timeout_s == 20.0
    pending.take_all(timed_out=True)
    pending.take_all(timed_out=True)
    assert pending.current_timeout_s == 35.0, "capped"
    pending.sent_live(row(2), now=0.0)
    pending.confirm([(2, 2)])
    assert pending.current_timeout_s == 10.0


def test_taking_everything_for_a_resend_returns_live_rows_in_seq_order() -> None:
    pending = Unconfirmed()
    for seq in (5, 3, 4):
        pending.sent_live(row(seq), now=0.0)
    pending.sent_batch([1, 2], now=0.0)
    assert [r.seq for r in pending.take_all()] == [3, 4, 5]
    assert not pending, "replay batches are re-read from the outbox"


def test_a_puback_confirms_only_without_a_maestro() -> None:
    pending = Unconfirmed()
    pending.sent_live(row(1), now=0.0)
    batch = pending.sent_batch([2, 3], now=0.0)
    pending.confirm_live(1)
    pending.confirm_batch(batch)
    pending.confirm_batch(batch)  # twice: harmless
    assert not pending


# -- the maestro replicas, seen from an agent --------------------------------------------
def status(state: MaestroState, ts: float) -> MaestroStatus:
    return MaestroStatus(replica="main", state=state, ts=ts)


def test_a_new_online_of_a_replica_calls_for_a_look_but_its_retained_copy_does_not() -> None:
    hub = HubWatch()
    assert hub.on_status("main", status(MaestroState.ONLINE, 100.0), now=5.0)
    assert not hub.on_status("main", status(MaestroState.ONLINE, 100.0), now=6.0), "retained"
    assert not hub.on_status("main", status(MaestroState.OFFLINE, 100.0), now=6.0)
    assert hub.on_status("main", status(MaestroState.ONLINE, 160.0), now=7.0), "it came back"


def test_the_look_comes_a_grace_after_the_first_online_of_a_burst() -> None:
    hub = HubWatch()
    hub.on_status("r1", status(MaestroState.ONLINE, 100.0), now=5.0)
    hub.on_status("r2", status(MaestroState.ONLINE, 100.0), now=6.0)
    assert hub.recheck_due(6.0 + RESEND_GRACE_S - 0.1) is None
    assert hub.recheck_due(6.0 + RESEND_GRACE_S) == 5.0, "samples sent before 5.0 are at risk"
    assert hub.recheck_due(100.0) is None, "once"


def test_all_offline_only_when_every_known_replica_said_offline() -> None:
    hub = HubWatch()
    assert not hub.all_offline, "no replica known: do not assume it is down"
    hub.on_status("r1", status(MaestroState.ONLINE, 1.0), now=0.0)
    hub.on_status("r2", status(MaestroState.OFFLINE, 1.0), now=0.0)
    assert not hub.all_offline
    hub.on_status("r1", status(MaestroState.OFFLINE, 2.0), now=0.0)
    assert hub.all_offline


def test_ack_mode_is_remembered_across_restarts(tmp_path: Path) -> None:
    first = AckMode(tmp_path)
    assert not first.on, "no maestro seen yet: a PUBACK confirms"
    assert first.maestro_seen()
    assert not first.maestro_seen(), "reported once"
    assert AckMode(tmp_path).on


# -- the maestro's confirmations -----------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def maestro_acks(
    merge_s: float = 5.0, generation: list[int] | None = None
) -> tuple[StoredAcks, list[tuple[str, Stored]], Clock]:
    sent: list[tuple[str, Stored]] = []
    clock = Clock()
    link = generation if generation is not None else [0]
    acks = StoredAcks(
        Topics("lab"),
        "main",
        lambda topic, payload: sent.append((topic, decode_stored(payload))),
        merge_s=merge_s,
        generation=lambda: link[0],
        clock=lambda: 1_764_050_000.0,
        monotonic=clock,
    )
    return acks, sent, clock


def test_an_agents_first_confirmation_goes_out_at_once() -> None:
    acks, sent, _ = maestro_acks()
    acks.stored("a1", [1])
    acks.stored("a2", [5])
    acks.stored("a1", [2])
    assert [(topic, ack.ranges) for topic, ack in sent] == [
        ("lab/stored/a1", [(1, 1)]),
        ("lab/stored/a2", [(5, 5)]),
    ]


def test_live_samples_are_confirmed_merged_once_they_waited_long_enough() -> None:
    acks, sent, clock = maestro_acks()
    acks.stored("a1", [0])
    sent.clear()
    for seq in (1, 2, 3):
        acks.stored("a1", [seq])
        clock.now += 1.0
    assert sent == [], "merged, not one message per sample"
    acks.flush()
    assert sent == []
    clock.now += 2.0
    assert acks.flush() == 1
    assert sent == [("lab/stored/a1", Stored(replica="main", ts=1_764_050_000.0, ranges=[(1, 3)]))]


def test_replayed_samples_are_confirmed_at_once_with_what_waited() -> None:
    acks, sent, _ = maestro_acks()
    acks.stored("a1", [9])
    sent.clear()
    acks.stored("a1", [10])
    acks.stored("a1", [1, 2, 3], at_once=True)
    assert [ack.ranges for _, ack in sent] == [[(1, 3), (10, 10)]]
    assert acks.waiting == 0


def test_many_waiting_samples_are_confirmed_without_waiting() -> None:
    acks, sent, _ = maestro_acks()
    acks.stored("a1", [0])
    sent.clear()
    for seq in range(1, MERGE_MAX + 1):
        acks.stored("a1", [seq])
    assert [ack.ranges for _, ack in sent] == [[(1, MERGE_MAX)]]


def test_a_stopping_agent_is_confirmed_at_once_for_a_while() -> None:
    acks, sent, clock = maestro_acks()
    acks.stored("a1", [0])
    sent.clear()
    acks.stored("a1", [1])
    acks.prompt("a1")
    acks.stored("a1", [2])
    assert [ack.ranges for _, ack in sent] == [[(1, 1)], [(2, 2)]]
    clock.now += PROMPT_S + 1
    acks.stored("a1", [3])
    assert len(sent) == 2, "merged again once the agent is back"


def test_everything_waiting_goes_out_at_shutdown_and_agents_stay_apart() -> None:
    acks, sent, _ = maestro_acks()
    acks.stored("a1", [0])
    acks.stored("a2", [6])
    sent.clear()
    acks.stored("a1", [1])
    acks.stored("a2", [7])
    assert acks.flush(all_of_them=True) == 2
    assert sorted((topic, ack.ranges) for topic, ack in sent) == [
        ("lab/stored/a1", [(1, 1)]),
        ("lab/stored/a2", [(7, 7)]),
    ]


def test_without_merging_every_message_is_confirmed_at_once() -> None:
    acks, sent, _ = maestro_acks(merge_s=0)
    acks.stored("a1", [1])
    assert len(sent) == 1


def test_after_a_broker_reconnect_every_confirmation_goes_out_at_once_for_a_while() -> None:
    link = [1]  # connected once
    acks, sent, clock = maestro_acks(generation=link)
    acks.stored("a1", [0])
    acks.stored("a1", [1])
    assert len(sent) == 2, "the first connection counts as a reconnect"
    clock.now += PROMPT_S + 1
    acks.stored("a1", [2])
    assert len(sent) == 2, "merged again"
    link[0] = 2  # the broker came back
    acks.stored("a1", [3])
    assert [ack.ranges for _, ack in sent[2:]] == [[(2, 3)]]


def test_after_a_lost_link_what_the_broker_acknowledged_is_held_back_not_resent() -> None:
    pending = Unconfirmed()
    pending.sent_live(row(1), now=0.0)
    pending.sent_live(row(2), now=0.0)
    pending.puback([1], sent_at=0.0)  # 2 was still in flight when the link dropped
    rows = pending.take_all(link_lost=True)
    assert [r.seq for r in rows] == [1, 2], "both go to the outbox"
    assert pending.held_back(1), "1 may be stored already: wait for its confirmation"
    assert not pending.held_back(2), "2 is sent again at once"
    pending.confirm([(1, 1)])
    assert not pending.held_back(1)


def test_held_back_samples_still_time_out_and_a_resend_releases_them() -> None:
    pending = Unconfirmed(timeout_s=10.0)
    pending.sent_live(row(1), now=0.0)
    pending.puback([1], sent_at=0.0)
    pending.take_all(link_lost=True)
    assert pending.due(10.0), "a confirmation lost for good must not keep it back for ever"
    pending.take_all(timed_out=True)
    assert not pending.held_back(1), "sent again now"
