"""The command lifecycle, request checks, ids and deadlines, with plain inputs and times."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from arete.payloads import CommandId, ErrorInfo, ReplyState
from maestro.commands.deadlines import Deadlines
from maestro.commands.issue import CommandIds, Request, build_message, validate_request
from maestro.commands.lifecycle import (
    CommandState,
    DeadlinePassed,
    Delivered,
    DeliveryRefused,
    Event,
    Replied,
    advance,
    deadline_of,
    expiry_interval,
    settle,
)
from maestro.commands.records import CommandRecord
from maestro.commands.settings import CommandSettings
from maestro.errors import CommandError

S = CommandState
ACCEPTED = Replied(ReplyState.ACCEPTED)
RUNNING = Replied(ReplyState.RUNNING)
OK = Replied(ReplyState.OK)
FAILED = Replied(ReplyState.FAILED, ErrorInfo("exit_status", "exit status 2"))
ROUND_TRIP = [S.QUEUED, S.SENT, S.ACCEPTED, S.RUNNING, S.OK]


def run(events: list[Event], start: CommandState = S.QUEUED) -> list[CommandState]:
    """The states a command goes through when fed ``events`` in order."""
    states = [start]
    for event in events:
        states += [change.state for change in settle(states[-1], event)]
    return states


# -- lifecycle -----------------------------------------------------------------------------
def test_a_command_that_runs_goes_queued_sent_accepted_running_ok() -> None:
    assert run([Delivered(), ACCEPTED, RUNNING, OK]) == ROUND_TRIP


def test_duplicated_replies_change_nothing() -> None:
    events: list[Event] = [Delivered(), ACCEPTED, ACCEPTED, RUNNING, RUNNING, OK, OK]
    assert run(events) == [S.QUEUED, S.SENT, S.ACCEPTED, S.RUNNING, S.OK]


def test_accepted_arriving_after_running_is_ignored() -> None:
    assert run([Delivered(), RUNNING, ACCEPTED, OK]) == [S.QUEUED, S.SENT, S.RUNNING, S.OK]


def test_a_reply_that_overtakes_the_puback_records_the_delivery_first() -> None:
    assert run([ACCEPTED, Delivered(), RUNNING, OK]) == ROUND_TRIP
    assert run([OK, Delivered()]) == [S.QUEUED, S.SENT, S.OK]


FINALS: list[Event] = [
    OK,
    FAILED,
    Replied(ReplyState.REJECTED),
    Replied(ReplyState.EXPIRED),
    DeadlinePassed(),
]


@pytest.mark.parametrize("final", FINALS)
def test_a_final_state_is_final(final: Event) -> None:
    end = run([Delivered(), ACCEPTED, final])[-1]
    assert end.is_final
    later_events: list[Event] = [Delivered(), ACCEPTED, RUNNING, OK, FAILED, DeadlinePassed()]
    for later in later_events:
        assert advance(end, later) is None


def test_a_final_reply_may_come_without_the_earlier_ones() -> None:
    assert run([Delivered(), OK]) == [S.QUEUED, S.SENT, S.OK]


def test_an_expired_reply_ends_the_command_as_expired_with_the_agents_reason() -> None:
    change = advance(S.SENT, Replied(ReplyState.EXPIRED, ErrorInfo("expired", "12.0s ago")))
    assert change is not None
    assert change.state is S.EXPIRED
    assert (change.error_code, change.error_message) == ("expired", "12.0s ago")


def test_a_rejection_keeps_the_agents_code() -> None:
    change = advance(S.SENT, Replied(ReplyState.REJECTED, ErrorInfo("unsigned", "signed only")))
    assert change is not None
    assert (change.state, change.error_code) == (S.REJECTED, "unsigned")


@pytest.mark.parametrize("current", [S.QUEUED, S.SENT, S.ACCEPTED, S.RUNNING])
def test_a_duplicate_rejection_never_ends_a_command(current: CommandState) -> None:
    """It answers a redelivery; the first delivery's replies stand."""
    duplicate = Replied(ReplyState.REJECTED, ErrorInfo("duplicate", "already received"))
    assert advance(current, duplicate) is None


@pytest.mark.parametrize(
    ("current", "code"),
    [
        (S.QUEUED, "not_delivered"),
        (S.SENT, "no_reply"),
        (S.ACCEPTED, "no_final_reply"),
        (S.RUNNING, "no_final_reply"),
    ],
)
def test_the_deadline_times_out_an_open_command_and_says_how_far_it_got(
    current: CommandState, code: str
) -> None:
    change = advance(current, DeadlinePassed())
    assert change is not None
    assert change.state is S.TIMED_OUT
    assert change.error_code == code
    assert change.error_message


def test_a_publish_the_broker_refuses_fails_the_command_as_not_delivered() -> None:
    change = advance(S.QUEUED, DeliveryRefused("not authorised"))
    assert change is not None
    assert (change.state, change.error_code) == (S.FAILED, "not_delivered")
    assert "not authorised" in (change.error_message or "")


def test_the_record_keeps_when_it_was_sent_accepted_and_finished() -> None:
    record = make_record()
    steps: list[tuple[Event, float]] = [(Delivered(), 101.0), (ACCEPTED, 102.0), (RUNNING, 103.0)]
    for event, now in steps:
        change = advance(record.state, event)
        assert change is not None
        record = record.advanced(change, now)
    change = advance(record.state, OK)
    assert change is not None
    record = record.advanced(change, 104.0, {"stdout": "hi"})
    assert (record.sent_at, record.accepted_at, record.finished_at) == (101.0, 102.0, 104.0)
    assert record.result == {"stdout": "hi"}
    assert record.has_result
    assert record.to_dict()["state"] == "ok"


def test_a_command_that_never_reached_the_broker_has_no_sent_time() -> None:
    record = make_record()
    change = advance(record.state, DeadlinePassed())
    assert change is not None
    timed_out = record.advanced(change, 200.0)
    assert timed_out.sent_at is None
    assert timed_out.finished_at == 200.0


# -- time ----------------------------------------------------------------------------------
def test_an_unanswered_command_times_out_at_its_expiry_plus_the_grace() -> None:
    assert deadline_of(expires_at=130.0, timeout_s=30.0, grace_s=2.0, accepted_at=None) == 132.0


def test_a_command_accepted_late_gets_its_whole_timeout_to_finish() -> None:
    assert deadline_of(expires_at=130.0, timeout_s=30.0, grace_s=2.0, accepted_at=129.0) == 161.0
    assert deadline_of(expires_at=130.0, timeout_s=30.0, grace_s=2.0, accepted_at=100.0) == 132.0


def test_message_expiry_rounds_up_and_is_none_once_expired() -> None:
    assert expiry_interval(130.0, 100.0) == 30
    assert expiry_interval(130.0, 129.7) == 1
    assert expiry_interval(130.2, 100.0) == 31
    assert expiry_interval(130.0, 130.0) is None


def test_deadlines_come_out_earliest_first_and_moved_ones_only_once() -> None:
    deadlines = Deadlines()
    assert deadlines.set("a", 10.0)
    assert not deadlines.set("b", 20.0)
    assert deadlines.set("c", 5.0)
    deadlines.set("a", 30.0)  # moved later (accepted late)
    deadlines.discard("b")
    assert deadlines.next_due() == 5.0
    assert deadlines.pop_due(25.0) == ["c"]
    assert deadlines.pop_due(29.9) == []
    assert deadlines.pop_due(30.0) == ["a"]
    assert deadlines.next_due() is None
    assert len(deadlines) == 0


def test_deadlines_stay_small_when_moved_many_times() -> None:
    deadlines = Deadlines()
    for step in range(10_000):
        deadlines.set("a", float(step))
    assert len(deadlines._heap) < 200  # stale entries are compacted away
    assert deadlines.pop_due(1e9) == ["a"]


# -- requests ------------------------------------------------------------------------------
SETTINGS = CommandSettings()


def request(**overrides: Any) -> Request:
    values: dict[str, Any] = {
        "agent_id": "a1",
        "name": "metrics",
        "args": None,
        "timeout_s": None,
        "actor": "alice",
        "job_id": None,
    }
    values.update(overrides)
    agent_id, name, args = values.pop("agent_id"), values.pop("name"), values.pop("args")
    return validate_request(agent_id, name, args, settings=SETTINGS, **values)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"agent_id": "no/slash"}, "bad_agent"),
        ({"agent_id": "maestro"}, "bad_agent"),
        ({"name": "rm_rf"}, "unknown_command"),
        ({"name": "shell", "args": {"argv": ["ls"], "bogus": 1}}, "bad_args"),
        ({"name": "shell", "args": {}}, "bad_args"),
        ({"args": ["not", "an", "object"]}, "bad_args"),
        ({"timeout_s": 0}, "bad_timeout"),
        ({"timeout_s": 3601}, "bad_timeout"),
        ({"timeout_s": "10"}, "bad_timeout"),
        ({"actor": ""}, "bad_actor"),
        ({"actor": "eve\n"}, "bad_actor"),
        ({"job_id": "job with spaces"}, "bad_job"),
    ],
)
def test_a_bad_request_is_refused_with_a_code(overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(CommandError) as caught:
        request(**overrides)
    assert caught.value.code == code


def test_the_timeout_defaults_to_the_commands_own_default() -> None:
    assert request(name="metrics").timeout_s == 10.0
    assert request(name="docker_restart", args={"container": "web"}).timeout_s == 120.0
    assert request(timeout_s=5).timeout_s == 5.0


def test_a_shell_commands_default_timeout_outlasts_its_own_timeout() -> None:
    assert request(name="shell", args={"argv": ["true"]}).timeout_s == 40.0
    long_one = request(name="shell", args={"argv": ["sleep", "200"], "timeout_s": 300})
    assert long_one.timeout_s == 310.0


def test_the_default_timeout_never_exceeds_the_configured_maximum() -> None:
    settings = CommandSettings(max_timeout_s=60, default_timeout_s=30)
    long_one = validate_request(
        "a1",
        "shell",
        {"argv": ["sleep", "200"], "timeout_s": 300},
        timeout_s=None,
        actor="alice",
        job_id=None,
        settings=settings,
    )
    assert long_one.timeout_s == 60.0


def test_settings_refuse_a_default_longer_than_the_maximum() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        CommandSettings(default_timeout_s=100, max_timeout_s=50)


def test_ids_are_valid_unique_and_sort_in_creation_order_even_if_the_clock_steps_back() -> None:
    ids = CommandIds()
    made = [ids.new(t) for t in [1000.0, 1000.0, 999.0, 1000.5, 2e9]]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    for command_id in made:
        assert msgspec.convert(command_id, CommandId) == command_id


def test_a_command_too_large_for_the_agent_is_refused_before_it_is_recorded() -> None:
    fits = request(name="shell", args={"command": "x" * 16384})
    _, payload = build_message(fits, command_id="c-1", issued_at=0, expires_at=30, key=None)
    assert len(payload) > 16384
    # Valid arguments (9 of 256 argv items of at most 8 KiB) but over the 64 KiB limit.
    huge = request(name="shell", args={"argv": ["x" * 8192] * 9})
    with pytest.raises(CommandError) as caught:
        build_message(huge, command_id="c-1", issued_at=0, expires_at=30, key=None)
    assert caught.value.code == "too_large"


def make_record() -> CommandRecord:
    return CommandRecord(
        id="c-1",
        agent="a1",
        name="metrics",
        args={},
        state=S.QUEUED,
        actor="alice",
        job_id=None,
        timeout_s=30.0,
        created_at=100.0,
        expires_at=130.0,
        updated_at=100.0,
    )
