"""The host updater's decisions, pure: what to do next with a self-update (docs/updates.md).

The root updater (edge_agent/updater.py) reads the files the agent and the updater
itself left in the agent's state directory, describes them in a :class:`View`, and asks
:func:`decide` for the next :data:`Step`; it performs the step, records the new phase in
``state.json`` and asks again, until the step is :class:`Done`. Nothing here remembers
anything between two calls: an updater killed at any point (kill -9, a reboot) starts
again from ``state.json`` and the request, and :func:`decide` picks up where it stopped.

The phases on disk (:class:`arete.payloads.UpdatePhase`) and what a restart does in each:

- ``installing``: a half-made venv may be there; it is removed and installed again.
- ``switched`` with no ``reason``: ``current`` is (or is made again) the new version and
  the agent is restarted; the health window starts over from the new switch time.
- ``switched`` with a ``reason``: a rollback was decided; it is carried out again.
- ``healthy``, ``rolled_back``, ``failed``: done; the request is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import msgspec

from arete.commands import VERSION_PATTERN
from arete.payloads import UpdatePhase, UpdateState
from edge_agent.health import HealthReport
from edge_agent.update_files import UpdateRequest

TERMINAL: Final = frozenset({UpdatePhase.HEALTHY, UpdatePhase.ROLLED_BACK, UpdatePhase.FAILED})
# The new version restarted this many times since the switch: it does not start.
RESTARTS_MEAN_BROKEN: Final = 3
DID_NOT_START: Final = "the new version did not start"
_VERSION_RE: Final = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class UnitStatus:
    """The agent's service as its manager sees it (``systemctl show``)."""

    active_state: str = ""  # active, activating, failed, inactive...
    sub_state: str = ""  # running, auto-restart...
    restarts: int = 0  # NRestarts

    @property
    def failing(self) -> bool:
        return self.active_state == "failed" or self.sub_state == "auto-restart"


def parse_unit_status(text: str) -> UnitStatus:
    """``KEY=VALUE`` lines (``systemctl show -p ActiveState -p SubState -p NRestarts``)."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    restarts = values.get("NRestarts", "0").strip()
    return UnitStatus(
        active_state=values.get("ActiveState", "").strip(),
        sub_state=values.get("SubState", "").strip(),
        restarts=int(restarts) if restarts.isdigit() else 0,
    )


def request_problem(request: UpdateRequest) -> str | None:
    """Why a request cannot be carried out, or None."""
    if request.rollback and request.version is not None:
        return "bad request: give a version or rollback, not both"
    if not request.rollback and request.version is None:
        return "bad request: no version"
    if request.version is not None and not _VERSION_RE.match(request.version):
        return f"bad request: {request.version[:40]!r} is not a version"
    if not 1 <= request.health_deadline_s <= 3600:
        return "bad request: health_deadline_s must be 1-3600"
    return None


# -- steps --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    """Nothing (more) to do; remove the request when ``remove_request``."""

    remove_request: bool


@dataclass(frozen=True)
class Finish:
    """Record a final phase without touching the installed versions; remove the request."""

    state: UpdateState


@dataclass(frozen=True)
class Install:
    """Verify the spooled release again and install it beside the current version."""

    from_version: str
    to_version: str


@dataclass(frozen=True)
class Switch:
    """Record ``switched`` (now), point ``current`` at ``to_version``, restart the agent,
    and start the health window."""

    from_version: str
    to_version: str


@dataclass(frozen=True)
class Wait:
    """Nothing yet: look again in a moment."""


@dataclass(frozen=True)
class Commit:
    """The new version proved healthy: record ``healthy``, prune old versions."""

    state: UpdateState


@dataclass(frozen=True)
class Rollback:
    """Record the decision, point ``current`` back at ``state.from_version``, restart
    the agent, record ``rolled_back`` with ``reason``."""

    state: UpdateState
    reason: str


Step = Done | Finish | Install | Switch | Wait | Commit | Rollback


@dataclass(frozen=True)
class View:
    """What the updater sees now. ``installed`` and ``watch_until`` are this run's memory:
    the version it installed, and the end of the health window it started."""

    request: UpdateRequest | None
    request_error: str | None  # request.json exists but cannot be read
    state: UpdateState | None
    current: str  # the version /opt/arete/current points at
    previous: str | None  # the version /opt/arete/previous points at, if any
    now: float
    health: HealthReport | None = None
    unit: UnitStatus | None = None
    restarts_at_switch: int = 0
    installed: str | None = None
    watch_until: float | None = None


def decide(view: View) -> Step:
    """The next step for what the updater sees (see the module's docstring)."""
    request, state = view.request, view.state
    if request is None:
        if view.request_error is not None:
            failed_read = _state(
                UpdatePhase.FAILED, view, None, reason=view.request_error, to=view.current
            )
            return Finish(failed_read)
        return Done(remove_request=False)
    mine = state is not None and state.command_id == request.command_id
    if state is None or not mine or state.phase == UpdatePhase.PENDING:
        return _start(view, request)
    return _resume(view, state)


def _resume(view: View, state: UpdateState) -> Step:
    if state.phase in TERMINAL:
        return Done(remove_request=True)
    if state.phase == UpdatePhase.INSTALLING:
        if view.installed == state.to_version:
            return Switch(state.from_version, state.to_version)
        return Install(state.from_version, state.to_version)
    # switched
    if state.reason is not None:
        return Rollback(state, state.reason)
    if view.current != state.to_version or view.watch_until is None:
        return Switch(state.from_version, state.to_version)  # resumed: switch, restart again
    return _judge(view, state, view.watch_until)


def _start(view: View, request: UpdateRequest) -> Step:
    problem = request_problem(request)
    target = view.previous if request.rollback else request.version
    if problem is None and request.rollback and (target is None or target == view.current):
        problem = "no previous version to roll back to"
    if problem is not None or target is None:
        to = request.version if request.version and _VERSION_RE.match(request.version) else None
        bad = problem or "bad request"
        return Finish(_state(UpdatePhase.FAILED, view, request, reason=bad, to=to or view.current))
    if target == view.current:
        return Finish(_state(UpdatePhase.HEALTHY, view, request, reason=None, to=target))
    if request.rollback:
        return Switch(view.current, target)  # the previous version is installed already
    return Install(view.current, target)


def _judge(view: View, state: UpdateState, watch_until: float) -> Step:
    health = view.health
    if health is not None and health.version == state.to_version and health.healthy_at >= state.ts:
        return Commit(_with(state, UpdatePhase.HEALTHY, view.now, None))
    unit = view.unit
    broken = unit is not None and (
        unit.active_state == "failed"
        or unit.restarts - view.restarts_at_switch >= RESTARTS_MEAN_BROKEN
    )
    if broken:
        return Rollback(state, DID_NOT_START)
    if view.now < watch_until:
        return Wait()
    restarted = unit is not None and (unit.failing or unit.restarts > view.restarts_at_switch)
    if restarted:
        return Rollback(state, DID_NOT_START)
    window = round(watch_until - state.ts)
    return Rollback(state, f"no healthy report in {window} s")


def _state(
    phase: UpdatePhase, view: View, request: UpdateRequest | None, *, reason: str | None, to: str
) -> UpdateState:
    return UpdateState(
        phase=phase,
        from_version=view.current,
        to_version=to,
        ts=view.now,
        command_id=request.command_id if request is not None else None,
        reason=reason[:200] if reason is not None else None,
    )


def _with(state: UpdateState, phase: UpdatePhase, now: float, reason: str | None) -> UpdateState:
    return msgspec.structs.replace(state, phase=phase, ts=now, reason=reason)


def rolled_back(state: UpdateState, reason: str, now: float) -> UpdateState:
    """The final record of a rollback."""
    return _with(state, UpdatePhase.ROLLED_BACK, now, reason[:200])


def switched(from_version: str, to_version: str, command_id: str | None, now: float) -> UpdateState:
    return UpdateState(
        phase=UpdatePhase.SWITCHED,
        from_version=from_version,
        to_version=to_version,
        ts=now,
        command_id=command_id,
    )


def installing(
    from_version: str, to_version: str, command_id: str | None, now: float
) -> UpdateState:
    return UpdateState(
        phase=UpdatePhase.INSTALLING,
        from_version=from_version,
        to_version=to_version,
        ts=now,
        command_id=command_id,
    )


def rolling_back(state: UpdateState, reason: str) -> UpdateState:
    """``switched`` with the decision in ``reason``: a restart carries the rollback out."""
    return msgspec.structs.replace(state, reason=reason[:200])


def failed(
    from_version: str, to_version: str, command_id: str | None, reason: str, now: float
) -> UpdateState:
    return UpdateState(
        phase=UpdatePhase.FAILED,
        from_version=from_version,
        to_version=to_version,
        ts=now,
        command_id=command_id,
        reason=reason[:200],
    )


def is_version(text: str) -> bool:
    return bool(_VERSION_RE.match(text))
