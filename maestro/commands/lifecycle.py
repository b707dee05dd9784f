"""The lifecycle of one command, as pure functions (no clock, no I/O).

::

    queued ──► sent ──► accepted ──► running ──┬─► ok
      │          │          │           │       └─► failed
      │          │          └───────────┴────────► timed_out  (no final reply in time)
      │          └──► rejected | expired  (the agent refused it, never executed)
      ├──► failed      (the broker refused the publish: code ``not_delivered``)
      └──► timed_out   (no PUBACK before the command expired: code ``not_delivered``)

The service feeds each event to :func:`settle` (:func:`advance` until nothing changes)
and stores every transition it returns; ``None`` from :func:`advance` means "nothing
changes" (a duplicate, a stale or out-of-order reply, any event
after a final state). See ``docs/commands.md`` for the reasons behind each rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from arete.payloads import ErrorInfo, ReplyState


class CommandState(StrEnum):
    QUEUED = "queued"  # recorded; the publish has not been acknowledged by the broker
    SENT = "sent"  # the broker took it (PUBACK)
    ACCEPTED = "accepted"  # the agent admitted it and recorded its id
    RUNNING = "running"  # the agent's handler started
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset(
    {
        CommandState.OK,
        CommandState.FAILED,
        CommandState.TIMED_OUT,
        CommandState.EXPIRED,
        CommandState.REJECTED,
    }
)
OPEN_STATES: Final = frozenset(CommandState) - FINAL_STATES

# How far along a command is; a reply never moves it backwards.
_PROGRESS: Final = {
    CommandState.QUEUED: 0,
    CommandState.SENT: 1,
    CommandState.ACCEPTED: 2,
    CommandState.RUNNING: 3,
}

_FROM_REPLY: Final = {
    ReplyState.ACCEPTED: CommandState.ACCEPTED,
    ReplyState.RUNNING: CommandState.RUNNING,
    ReplyState.OK: CommandState.OK,
    ReplyState.FAILED: CommandState.FAILED,
    ReplyState.REJECTED: CommandState.REJECTED,
    ReplyState.EXPIRED: CommandState.EXPIRED,
}

NOT_DELIVERED: Final = "not_delivered"
NO_REPLY: Final = "no_reply"
NO_FINAL_REPLY: Final = "no_final_reply"
DUPLICATE: Final = "duplicate"


# -- events ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivered:
    """The broker acknowledged the publish (PUBACK)."""


@dataclass(frozen=True, slots=True)
class DeliveryRefused:
    """The broker refused the publish (e.g. not authorised); it will never arrive."""

    message: str


@dataclass(frozen=True, slots=True)
class Replied:
    """The target agent answered on its ``reply`` topic."""

    state: ReplyState
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The command's deadline (see :func:`deadline_of`) passed without a final state."""


Event = Delivered | DeliveryRefused | Replied | DeadlinePassed


@dataclass(frozen=True, slots=True)
class Transition:
    """The new state, and why (``error_*`` for failures, ``detail`` for the history)."""

    state: CommandState
    detail: str
    error_code: str | None = None
    error_message: str | None = None


def advance(current: CommandState, event: Event) -> Transition | None:  # noqa: PLR0911
    """The transition ``event`` causes from ``current``, or ``None`` if nothing changes."""
    if current.is_final:
        return None  # a final state is final: late, duplicated replies change nothing
    if isinstance(event, Delivered):
        if current is CommandState.QUEUED:
            return Transition(CommandState.SENT, "the broker took the command")
        return None  # the agent's reply overtook the PUBACK: it was delivered already
    if isinstance(event, DeliveryRefused):
        if current is CommandState.QUEUED:
            return Transition(
                CommandState.FAILED,
                "the broker refused the command",
                NOT_DELIVERED,
                f"the broker refused the command: {event.message}",
            )
        return None
    if isinstance(event, DeadlinePassed):
        return _timed_out(current)
    return _replied(current, event)


def settle(current: CommandState, event: Event) -> list[Transition]:
    """Every transition ``event`` causes from ``current``, in order (usually one, or none).

    A reply to a command still ``queued`` first moves it to ``sent``, then applies.
    """
    changes: list[Transition] = []
    while (change := advance(current, event)) is not None:
        changes.append(change)
        current = change.state
    return changes


def _replied(current: CommandState, event: Replied) -> Transition | None:
    target = _FROM_REPLY[event.state]
    error = event.error
    if target is CommandState.REJECTED and error is not None and error.code == DUPLICATE:
        # Our ids are unique, so "duplicate" answers a redelivery (broker retry, or our
        # own re-publish after a restart): the first delivery's replies stand.
        return None
    if current is CommandState.QUEUED:
        # The reply overtook the PUBACK (they travel on separate paths to the event
        # loop): it was delivered, so record that first; ``settle`` applies the reply next.
        return Transition(CommandState.SENT, "delivered (the agent answered before the PUBACK)")
    if not target.is_final and _PROGRESS[target] <= _PROGRESS[current]:
        return None  # duplicated or out of order (``accepted`` after ``running``)
    detail = f"agent replied {event.state.value}"
    if error is None:
        return Transition(target, detail)
    return Transition(target, f"{detail}: {error.code}", error.code, error.message)


def _timed_out(current: CommandState) -> Transition:
    if current is CommandState.QUEUED:
        return Transition(
            CommandState.TIMED_OUT,
            "timed out before the broker took it",
            NOT_DELIVERED,
            "the broker did not acknowledge the command before it expired (is the link up?)",
        )
    if current is CommandState.SENT:
        return Transition(
            CommandState.TIMED_OUT,
            "timed out without any reply",
            NO_REPLY,
            "the agent did not answer before the command expired (offline, or stopped?)",
        )
    return Transition(
        CommandState.TIMED_OUT,
        f"timed out while {current.value}",
        NO_FINAL_REPLY,
        f"the agent {current.value} the command but sent no final reply in time",
    )


# -- time ------------------------------------------------------------------------------
def deadline_of(
    *, expires_at: float, timeout_s: float, grace_s: float, accepted_at: float | None
) -> float:
    """When an open command times out.

    Until the agent answers, the command can only be admitted before ``expires_at``; once
    it accepted the command (at ``accepted_at``) it gets ``timeout_s`` to finish, which
    matters when it was admitted late (an agent that reconnects just before expiry). The
    grace covers the reply's trip back.
    """
    finish_by = expires_at
    if accepted_at is not None:
        finish_by = max(expires_at, accepted_at + timeout_s)
    return finish_by + grace_s


def expiry_interval(expires_at: float, now: float) -> int | None:
    """MQTT 5 Message Expiry Interval (whole seconds, at least 1); ``None`` once expired.

    Rounded up: the broker may keep it up to a second past ``expires_at``, and the agent
    then answers ``expired``, which is better than the broker dropping it early.
    """
    remaining = expires_at - now
    if remaining <= 0:
        return None
    return max(1, math.ceil(remaining))
