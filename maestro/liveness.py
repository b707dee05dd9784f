"""Liveness of one agent as a pure state machine: ``evaluate(state, event, now) -> result``.

``online`` → ``late`` after one missed heartbeat → ``critical`` after three → back to
``online`` at the next contact; ``stopping`` and ``offline`` come from the agent's own
status (its clean shutdown, or its Last Will).

Epochs (one per agent connection) decide which words count:

* Only a status moves the epoch. An ``online`` (the birth of a connection) is adopted
  whatever its epoch: the newest birth is the connection that is up, so a real agent
  that reconnects always recovers, even after a forged or implausible epoch.
* ``offline`` / ``stopping`` of an older connection than the one we know are ignored: a
  late Will never marks a reconnected agent offline.
* Heartbeats and metrics ("contact", timed by the maestro's clock when they arrived)
  count only for the current epoch; one of any other epoch is ignored and never moves
  the epoch (one forged heartbeat with epoch 2^62 cannot make every real one stale).
  Before any status, the first contact makes the agent known.

While the maestro's own broker link is down nothing can arrive, so the shell stops
ticking; :class:`Resume` then gives every connected agent a fresh grace. The shell
(:mod:`maestro.registry`) feeds events and performs the returned transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from arete.payloads import AgentState, Status

DEFAULT_HEARTBEAT_S: Final = 10.0
WILL_REASON: Final = "connection_lost"


class Liveness(StrEnum):
    ONLINE = "online"
    LATE = "late"
    CRITICAL = "critical"
    STOPPING = "stopping"
    OFFLINE = "offline"

    @property
    def connected(self) -> bool:
        """States in which we expect contact (and judge its absence)."""
        return self in _WATCHED


_WATCHED: Final = frozenset({Liveness.ONLINE, Liveness.LATE, Liveness.CRITICAL})


@dataclass(frozen=True, slots=True)
class Policy:
    """How many missed heartbeats make an agent late / critical, plus a grace period.

    The grace covers delivery jitter: an agent's heartbeat is "missed" only when nothing
    arrived ``grace`` seconds after it was due. Default grace: a quarter of the period,
    between 0.3 s and 2 s (12 s / 32 s with the default 10 s heartbeat).
    """

    late_after: int = 1
    critical_after: int = 3
    grace_s: float | None = None

    def grace(self, heartbeat_s: float) -> float:
        if self.grace_s is not None:
            return self.grace_s
        return min(2.0, max(0.3, heartbeat_s / 4))

    def late_deadline(self, heartbeat_s: float) -> float:
        return self.late_after * heartbeat_s + self.grace(heartbeat_s)

    def critical_deadline(self, heartbeat_s: float) -> float:
        return self.critical_after * heartbeat_s + self.grace(heartbeat_s)


@dataclass(frozen=True, slots=True)
class AgentLive:
    agent_id: str
    state: Liveness
    epoch: int
    since: float  # when the agent entered ``state`` (maestro clock)
    last_contact: float  # newest contact of this epoch (maestro clock)
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    clean: bool = False  # an ``offline`` that followed a clean shutdown
    reason: str | None = None
    judged_from: float = 0.0  # silence counts from here at the earliest (link came back)


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StatusSeen:
    status: Status


@dataclass(frozen=True, slots=True)
class Contact:
    epoch: int
    at: float  # maestro clock when the message arrived (here or at a peer replica)


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock moved; ``contact`` is the newest known contact ``(epoch, at)``, if any."""

    contact: tuple[int, float] | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """The maestro's broker link is back at ``at``: silence until then proves nothing."""

    at: float


Event = StatusSeen | Contact | Tick | Resume


@dataclass(frozen=True, slots=True)
class Transition:
    agent_id: str
    old: Liveness | None
    new: Liveness
    epoch: int
    at: float
    reason: str | None
    clean: bool = False


Result = tuple[AgentLive | None, Transition | None]


def evaluate(
    agent_id: str, state: AgentLive | None, event: Event, now: float, policy: Policy
) -> Result:
    """The agent's next state and the transition it made (None when it stayed put)."""
    if isinstance(event, StatusSeen):
        return _on_status(agent_id, state, event.status, now)
    if isinstance(event, Contact):
        return _on_contact(agent_id, state, event.epoch, event.at, now)
    if isinstance(event, Resume):
        return _on_resume(state, event.at)
    return _on_tick(state, event.contact, now, policy)


def is_clean_offline(status: Status) -> bool:
    """An ``offline`` the agent published itself on shutdown (not its Will, not a crash)."""
    reason = status.reason or ""
    return reason != WILL_REASON and not reason.startswith("internal")


def _on_status(agent_id: str, state: AgentLive | None, status: Status, now: float) -> Result:
    new = _STATUS_STATE[status.state]
    heartbeat_s = status.heartbeat_s
    same = state is not None and status.epoch == state.epoch
    if new is Liveness.ONLINE:
        if same and state is not None and state.state is not Liveness.OFFLINE:
            # A repeated online of the same connection (retained copy): keep judging it.
            return replace(state, heartbeat_s=heartbeat_s), None
        if same and state is not None and state.state is Liveness.OFFLINE:
            return state, None  # online of a connection already declared dead
        # A birth: the connection that is up now, whatever epoch we believed in.
        return _move(
            agent_id,
            state,
            new,
            epoch=status.epoch,
            now=now,
            last_contact=now,
            heartbeat_s=heartbeat_s,
            reason=status.reason,
        )
    if state is not None and status.epoch < state.epoch:
        return state, None  # a late word of an older connection (e.g. its Will)
    if same and state is not None and state.state is new:
        return state, None
    clean = new is Liveness.STOPPING or (
        is_clean_offline(status)
        or (same and state is not None and state.state is Liveness.STOPPING)
    )
    last = state.last_contact if state is not None else now
    return _move(
        agent_id,
        state,
        new,
        epoch=status.epoch,
        now=now,
        last_contact=last,
        heartbeat_s=heartbeat_s,
        reason=status.reason,
        clean=clean,
    )


def _on_contact(
    agent_id: str, state: AgentLive | None, epoch: int, at: float, now: float
) -> Result:
    if state is None:
        # Data before any status (its retained status is on the way, or was cleared):
        # the agent is evidently connected. Its birth, when it comes, sets the epoch.
        return _move(
            agent_id,
            None,
            Liveness.ONLINE,
            epoch=epoch,
            now=now,
            last_contact=at,
            heartbeat_s=DEFAULT_HEARTBEAT_S,
            reason="contact",
        )
    current = epoch == state.epoch and state.state.connected and at > state.last_contact
    if not current:
        return state, None  # another connection's word, one that already ended, or old
    if state.state is Liveness.ONLINE:
        return replace(state, last_contact=at), None
    return _move(
        agent_id,
        state,
        Liveness.ONLINE,
        epoch=epoch,
        now=now,
        last_contact=at,
        heartbeat_s=state.heartbeat_s,
        reason="contact",
    )


def quiet_until(state: AgentLive, policy: Policy, heard: float = 0.0) -> float:
    """Until when a :class:`Tick` without new contact leaves ``state`` as it is: the next
    deadline of its silence (late for an online agent, critical for a late one; none for
    the others), counted from ``heard`` too when that is later (a contact of its own
    connection not folded into ``state`` yet). The registry skips such agents' ticks, so
    a fleet costs its changes."""
    silent_from = max(state.last_contact, state.judged_from, heard)
    if state.state is Liveness.ONLINE:
        return silent_from + policy.late_deadline(state.heartbeat_s)
    if state.state is Liveness.LATE:
        return silent_from + policy.critical_deadline(state.heartbeat_s)
    return math.inf


def _on_resume(state: AgentLive | None, at: float) -> Result:
    if state is None or not state.state.connected or state.judged_from >= at:
        return state, None
    return replace(state, judged_from=at), None


def _on_tick(
    state: AgentLive | None, contact: tuple[int, float] | None, now: float, policy: Policy
) -> Result:
    if state is None:
        return None, None
    if contact is not None and contact[0] == state.epoch and contact[1] > state.last_contact:
        touched, moved = _on_contact(state.agent_id, state, contact[0], contact[1], now)
        if moved is not None or touched is None:
            return touched, moved
        state = touched
    if not state.state.connected:
        return state, None
    silent = now - max(state.last_contact, state.judged_from)
    if silent > policy.critical_deadline(state.heartbeat_s):
        target = Liveness.CRITICAL
    elif silent > policy.late_deadline(state.heartbeat_s):
        target = Liveness.LATE
    else:
        target = Liveness.ONLINE
    if target is state.state or (target is Liveness.ONLINE):
        # Only contact brings an agent back online, never the passing of time.
        return state, None
    missed = int(silent // state.heartbeat_s)
    return _move(
        state.agent_id,
        state,
        target,
        epoch=state.epoch,
        now=now,
        last_contact=state.last_contact,
        heartbeat_s=state.heartbeat_s,
        reason=f"no heartbeat for {silent:.1f} s ({missed} missed)",
    )


def _move(
    agent_id: str,
    state: AgentLive | None,
    new: Liveness,
    *,
    epoch: int,
    now: float,
    last_contact: float,
    heartbeat_s: float,
    reason: str | None,
    clean: bool = False,
) -> Result:
    judged_from = state.judged_from if state is not None else 0.0
    moved = AgentLive(
        agent_id, new, epoch, now, last_contact, heartbeat_s, clean, reason, judged_from
    )
    old = state.state if state is not None else None
    return moved, Transition(agent_id, old, new, epoch, now, reason, clean)


_STATUS_STATE: Final = {
    AgentState.ONLINE: Liveness.ONLINE,
    AgentState.STOPPING: Liveness.STOPPING,
    AgentState.OFFLINE: Liveness.OFFLINE,
}
