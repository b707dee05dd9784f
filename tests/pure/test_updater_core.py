"""The host updater's decisions (edge_agent/updater_core.py): every phase, fresh and after
a kill, with plain inputs and a fake clock."""

from __future__ import annotations

from dataclasses import replace

import msgspec

from arete.payloads import UpdatePhase, UpdateState
from edge_agent.health import HealthReport
from edge_agent.update_files import UpdateRequest
from edge_agent.updater_core import (
    DID_NOT_START,
    Commit,
    Done,
    Finish,
    Install,
    Rollback,
    Switch,
    UnitStatus,
    View,
    Wait,
    decide,
    parse_unit_status,
)

NOW = 1_800_000_000.0


def request(version: str | None = "0.2.0", *, rollback: bool = False) -> UpdateRequest:
    return UpdateRequest(
        version=version,
        rollback=rollback,
        from_version="0.1.0",
        command_id="c1",
        health_deadline_s=60.0,
        requested_at=NOW - 1,
    )


def state(phase: UpdatePhase, ts: float = NOW, reason: str | None = None) -> UpdateState:
    return UpdateState(
        phase=phase,
        from_version="0.1.0",
        to_version="0.2.0",
        ts=ts,
        command_id="c1",
        reason=reason,
    )


def view(**changes: object) -> View:
    base = View(
        request=request(), request_error=None, state=None, current="0.1.0", previous=None, now=NOW
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_no_request_means_nothing_to_do() -> None:
    assert decide(view(request=None)) == Done(remove_request=False)


def test_a_new_request_installs_beside_the_current_version() -> None:
    assert decide(view()) == Install("0.1.0", "0.2.0")


def test_an_unreadable_request_fails_and_is_removed() -> None:
    step = decide(view(request=None, request_error="bad request: not JSON"))
    assert isinstance(step, Finish)
    assert step.state.phase == UpdatePhase.FAILED
    assert step.state.reason == "bad request: not JSON"


def test_a_request_for_the_running_version_is_healthy_at_once() -> None:
    step = decide(view(request=request("0.1.0")))
    assert isinstance(step, Finish)
    assert step.state.phase == UpdatePhase.HEALTHY


def test_rollback_switches_to_the_previous_version_without_installing() -> None:
    assert decide(view(request=request(None, rollback=True), previous="0.0.9")) == Switch(
        "0.1.0", "0.0.9"
    )
    step = decide(view(request=request(None, rollback=True)))
    assert isinstance(step, Finish)
    assert step.state.reason == "no previous version to roll back to"


def test_an_interrupted_install_is_done_again_and_a_finished_one_switches() -> None:
    installing = state(UpdatePhase.INSTALLING)
    assert decide(view(state=installing)) == Install("0.1.0", "0.2.0")
    assert decide(view(state=installing, installed="0.2.0")) == Switch("0.1.0", "0.2.0")


def test_a_switched_update_found_at_start_switches_and_restarts_again() -> None:
    switched = state(UpdatePhase.SWITCHED)
    # killed between recording the switch and the rename, or while watching
    assert decide(view(state=switched)) == Switch("0.1.0", "0.2.0")
    assert decide(view(state=switched, current="0.2.0")) == Switch("0.1.0", "0.2.0")


def test_a_decided_rollback_found_at_start_is_carried_out() -> None:
    deciding = state(UpdatePhase.SWITCHED, reason="no healthy report in 60 s")
    step = decide(view(state=deciding, current="0.1.0"))
    assert step == Rollback(deciding, "no healthy report in 60 s")


def test_health_from_the_new_version_after_the_switch_commits() -> None:
    switched = state(UpdatePhase.SWITCHED, ts=NOW - 10)
    watching = view(state=switched, current="0.2.0", watch_until=NOW + 50)
    old = HealthReport(version="0.1.0", pid=1, started_at=NOW - 9, healthy_at=NOW - 5)
    stale = HealthReport(version="0.2.0", pid=1, started_at=NOW - 99, healthy_at=NOW - 11)
    fresh = HealthReport(version="0.2.0", pid=1, started_at=NOW - 9, healthy_at=NOW - 2)
    assert decide(replace(watching, health=old)) == Wait()
    assert decide(replace(watching, health=stale)) == Wait()
    step = decide(replace(watching, health=fresh))
    assert isinstance(step, Commit)
    assert step.state.phase == UpdatePhase.HEALTHY
    assert step.state.ts == NOW


def test_no_health_in_the_window_rolls_back_saying_so() -> None:
    switched = state(UpdatePhase.SWITCHED, ts=NOW - 60)
    running = UnitStatus("active", "running", restarts=0)
    step = decide(view(state=switched, current="0.2.0", watch_until=NOW, unit=running))
    assert step == Rollback(switched, "no healthy report in 60 s")


def test_a_version_that_keeps_restarting_is_rolled_back_early_as_not_starting() -> None:
    switched = state(UpdatePhase.SWITCHED, ts=NOW - 8)
    crashing = UnitStatus("activating", "auto-restart", restarts=4)
    step = decide(
        view(
            state=switched,
            current="0.2.0",
            watch_until=NOW + 52,
            unit=crashing,
            restarts_at_switch=1,
        )
    )
    assert step == Rollback(switched, DID_NOT_START)
    once = UnitStatus("activating", "auto-restart", restarts=2)
    at_deadline = view(
        state=switched, current="0.2.0", watch_until=NOW, unit=once, restarts_at_switch=1
    )
    assert decide(at_deadline) == Rollback(switched, DID_NOT_START)


def test_a_finished_update_only_removes_its_request() -> None:
    for phase in (UpdatePhase.HEALTHY, UpdatePhase.ROLLED_BACK, UpdatePhase.FAILED):
        assert decide(view(state=state(phase))) == Done(remove_request=True)


def test_a_new_command_after_a_finished_one_starts_afresh() -> None:
    old = UpdateState(
        phase=UpdatePhase.HEALTHY,
        from_version="0.0.9",
        to_version="0.1.0",
        ts=NOW - 999,
        command_id="c0",
    )
    assert decide(view(state=old)) == Install("0.1.0", "0.2.0")


def test_bad_requests_fail_with_their_reason() -> None:
    both = UpdateRequest(
        version="0.2.0",
        rollback=True,
        from_version="0.1.0",
        command_id="c",
        health_deadline_s=60,
        requested_at=NOW,
    )
    step = decide(view(request=both))
    assert isinstance(step, Finish)
    assert "not both" in str(step.state.reason)
    bad = replace_request(version="../../etc")
    step = decide(view(request=bad))
    assert isinstance(step, Finish)
    assert "is not a version" in str(step.state.reason)
    assert step.state.to_version == "0.1.0"


def replace_request(**changes: object) -> UpdateRequest:
    return msgspec.structs.replace(request(), **changes)


def test_systemctl_show_output_is_parsed() -> None:
    unit = parse_unit_status("ActiveState=activating\nSubState=auto-restart\nNRestarts=7\n")
    assert unit == UnitStatus("activating", "auto-restart", 7)
    assert unit.failing
    assert parse_unit_status("garbage") == UnitStatus()
