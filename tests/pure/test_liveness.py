"""The liveness state machine, driven with plain events and a fake clock."""

from __future__ import annotations

from arete.payloads import AgentState, Status
from maestro.liveness import (
    AgentLive,
    Contact,
    Liveness,
    Policy,
    Resume,
    StatusSeen,
    Tick,
    Transition,
    evaluate,
)

POLICY = Policy()  # heartbeat 10 s: late after 12 s, critical after 32 s


def status(state: AgentState, epoch: int, reason: str | None = None, hb: float = 10) -> Status:
    return Status(
        state=state, epoch=epoch, ts=0, version="t", host="h", heartbeat_s=hb, reason=reason
    )


def step(
    state: AgentLive | None, event: StatusSeen | Contact | Tick, now: float
) -> tuple[AgentLive | None, Transition | None]:
    return evaluate("a1", state, event, now, POLICY)


def online(epoch: int = 5, now: float = 100.0) -> AgentLive:
    state, moved = step(None, StatusSeen(status(AgentState.ONLINE, epoch)), now)
    assert state is not None
    assert moved is not None
    return state


def test_a_first_online_status_makes_the_agent_online() -> None:
    state, moved = step(None, StatusSeen(status(AgentState.ONLINE, 5)), 100.0)
    assert state is not None
    assert state.state is Liveness.ONLINE
    assert state.epoch == 5
    assert moved == Transition("a1", None, Liveness.ONLINE, 5, 100.0, None, False)


def test_one_missed_heartbeat_makes_it_late_and_three_make_it_critical() -> None:
    state = online(now=100.0)
    same, moved = step(state, Tick(), 111.9)
    assert moved is None
    assert same is state
    late, moved = step(state, Tick(), 112.1)
    assert late is not None
    assert late.state is Liveness.LATE
    assert moved is not None
    assert moved.old is Liveness.ONLINE
    assert "1 missed" in (moved.reason or "")
    _still, moved = step(late, Tick(), 131.9)
    assert moved is None
    critical, moved = step(late, Tick(), 132.1)
    assert critical is not None
    assert critical.state is Liveness.CRITICAL
    assert moved is not None
    assert "3 missed" in (moved.reason or "")


def test_contact_brings_a_critical_agent_back_online() -> None:
    state, _ = step(online(now=100.0), Tick(), 140.0)
    assert state is not None
    assert state.state is Liveness.CRITICAL
    back, moved = step(state, Tick(contact=(5, 141.0)), 141.2)
    assert back is not None
    assert back.state is Liveness.ONLINE
    assert back.last_contact == 141.0
    assert moved is not None
    assert moved.old is Liveness.CRITICAL


def test_regular_contact_keeps_an_agent_online_without_transitions() -> None:
    state: AgentLive | None = online(now=100.0)
    for second in range(1, 60):
        state, moved = step(state, Tick(contact=(5, 100.0 + second)), 100.5 + second)
        assert moved is None
        assert state is not None
        assert state.state is Liveness.ONLINE


def test_the_passing_of_time_alone_never_brings_an_agent_back() -> None:
    late, _ = step(online(now=100.0), Tick(), 115.0)
    assert late is not None
    again, moved = step(late, Tick(contact=(5, 100.0)), 116.0)  # no newer contact
    assert moved is None
    assert again is not None
    assert again.state is Liveness.LATE


def test_a_will_marks_the_agent_offline_not_clean() -> None:
    state, moved = step(
        online(), StatusSeen(status(AgentState.OFFLINE, 5, "connection_lost")), 101.0
    )
    assert state is not None
    assert state.state is Liveness.OFFLINE
    assert not state.clean
    assert moved is not None
    assert moved.new is Liveness.OFFLINE
    assert not moved.clean


def test_a_clean_shutdown_goes_stopping_then_offline_marked_clean() -> None:
    stopping, moved = step(online(), StatusSeen(status(AgentState.STOPPING, 5, "shutdown")), 101)
    assert stopping is not None
    assert stopping.state is Liveness.STOPPING
    offline, moved = step(stopping, StatusSeen(status(AgentState.OFFLINE, 5, "shutdown")), 102)
    assert offline is not None
    assert offline.state is Liveness.OFFLINE
    assert offline.clean
    assert moved is not None
    assert moved.clean


def test_late_will_does_not_mark_fresh_agent_offline() -> None:
    fresh = online(epoch=6)
    state, moved = step(fresh, StatusSeen(status(AgentState.OFFLINE, 5, "connection_lost")), 101)
    assert moved is None
    assert state is fresh


def test_a_stale_sample_never_revives_a_dead_agent() -> None:
    dead, _ = step(online(epoch=5), StatusSeen(status(AgentState.OFFLINE, 5)), 101.0)
    for event in (Contact(5, 102.0), Contact(4, 103.0), Tick(contact=(5, 104.0))):
        state, moved = step(dead, event, 105.0)
        assert moved is None
        assert state is dead


def test_contact_of_a_newer_connection_waits_for_its_birth() -> None:
    dead, _ = step(online(epoch=5), StatusSeen(status(AgentState.OFFLINE, 5)), 101.0)
    state, moved = step(dead, Contact(6, 102.0), 102.0)
    assert moved is None
    assert state is dead, "only a status moves the epoch"
    born, moved = step(dead, StatusSeen(status(AgentState.ONLINE, 6)), 102.1)
    assert born is not None
    assert (born.state, born.epoch) == (Liveness.ONLINE, 6)
    assert moved is not None


def test_a_repeated_retained_online_of_the_same_connection_changes_nothing() -> None:
    state = online(now=100.0)
    again, moved = step(state, StatusSeen(status(AgentState.ONLINE, 5)), 105.0)
    assert moved is None
    assert again is not None
    assert again.last_contact == 100.0


def test_an_online_of_a_connection_already_dead_is_ignored() -> None:
    dead, _ = step(online(epoch=5), StatusSeen(status(AgentState.OFFLINE, 5)), 101.0)
    state, moved = step(dead, StatusSeen(status(AgentState.ONLINE, 5)), 102.0)
    assert moved is None
    assert state is dead


def test_metrics_before_any_status_make_an_agent_known_and_online() -> None:
    state, moved = step(None, Contact(3, 50.0), 50.0)
    assert state is not None
    assert state.state is Liveness.ONLINE
    assert state.epoch == 3
    assert moved is not None
    assert moved.old is None


def test_the_agents_own_heartbeat_period_sets_its_deadlines() -> None:
    fast, _ = step(None, StatusSeen(status(AgentState.ONLINE, 1, hb=1)), 10.0)
    assert fast is not None
    late, _ = step(fast, Tick(), 11.4)  # 1 s + 0.3 s grace
    assert late is not None
    assert late.state is Liveness.LATE
    critical, _ = step(late, Tick(), 13.4)
    assert critical is not None
    assert critical.state is Liveness.CRITICAL


def test_a_custom_policy_changes_how_many_misses_are_critical() -> None:
    policy = Policy(late_after=2, critical_after=5, grace_s=0)
    state, _ = evaluate("a1", None, StatusSeen(status(AgentState.ONLINE, 1)), 0.0, policy)
    late, moved = evaluate("a1", state, Tick(), 15.0, policy)
    assert moved is None
    late, moved = evaluate("a1", state, Tick(), 20.5, policy)
    assert late is not None
    assert late.state is Liveness.LATE
    critical, moved = evaluate("a1", late, Tick(), 50.5, policy)
    assert critical is not None
    assert critical.state is Liveness.CRITICAL


def test_a_forged_heartbeat_with_a_huge_epoch_never_moves_the_epoch() -> None:
    state: AgentLive | None = online(epoch=5, now=100.0)
    forged, moved = step(state, Tick(contact=(2**62, 101.0)), 101.1)
    assert moved is None
    assert forged is not None
    assert forged.epoch == 5
    forged, moved = step(forged, Contact(2**62, 101.5), 101.6)
    assert moved is None
    assert forged is not None
    assert forged.epoch == 5
    for second in range(2, 60):  # the real heartbeats still count
        state, moved = step(forged, Tick(contact=(5, 100.0 + second)), 100.5 + second)
        assert moved is None
        assert state is not None
        assert state.state is Liveness.ONLINE
        forged = state


def test_a_birth_is_adopted_whatever_epoch_came_before() -> None:
    # A forged (or implausible) epoch 2^62 got in as a birth: the real agent's next
    # connection, with a smaller epoch, still takes over.
    poisoned, _ = step(online(epoch=5), StatusSeen(status(AgentState.ONLINE, 2**62)), 101.0)
    assert poisoned is not None
    assert poisoned.epoch == 2**62
    real, moved = step(poisoned, StatusSeen(status(AgentState.ONLINE, 7)), 110.0)
    assert real is not None
    assert (real.state, real.epoch) == (Liveness.ONLINE, 7)
    assert moved is not None
    back, _ = step(real, Tick(contact=(7, 111.0)), 111.1)
    assert back is not None
    assert back.last_contact == 111.0
    # ...while a late Will of an older connection still changes nothing.
    same, moved = step(real, StatusSeen(status(AgentState.OFFLINE, 6, "connection_lost")), 112)
    assert moved is None
    assert same is real


def test_an_agent_known_only_from_a_forged_contact_recovers_at_its_birth() -> None:
    ghost, _ = step(None, Contact(2**62, 50.0), 50.0)
    assert ghost is not None
    real, _moved = step(ghost, StatusSeen(status(AgentState.ONLINE, 9)), 51.0)
    assert real is not None
    assert (real.state, real.epoch) == (Liveness.ONLINE, 9)


def test_after_the_link_comes_back_agents_get_a_fresh_grace() -> None:
    state = online(now=100.0)  # silent since 100: late at 112, critical at 132
    resumed, moved = evaluate("a1", state, Resume(130.0), 130.0, POLICY)
    assert moved is None
    assert resumed is not None
    _still, moved = step(resumed, Tick(), 141.9)
    assert moved is None, "judged from the link's return, not from the last contact"
    late, moved = step(resumed, Tick(), 142.1)
    assert late is not None
    assert late.state is Liveness.LATE
    critical, moved = step(late, Tick(), 162.1)
    assert critical is not None
    assert critical.state is Liveness.CRITICAL
    assert critical.last_contact == 100.0, "the last real contact is still shown"
