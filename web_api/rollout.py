"""The fleet rollout's state machine (sans-I/O): canary, batches, health gate, abort.

A :class:`Rollout` is fed what the registry shows of its agents (:class:`Seen`) and
the final outcome of each ``update`` command it asked for; it answers with the
commands to send (:class:`Send`). The shell (``web_api.jobs``) does the I/O.

- Agents already on the target version (and with no update in flight) are done at
  once, without a command. The others go out as a canary batch (``canary`` agents)
  first, then batches of ``batch_size``; a batch starts only when every agent of the
  one before has settled.
- The health gate, per agent: within ``health_timeout_s`` of its command, the agent
  shows state online, version == target, its updater's phase ``healthy`` (or no update
  in flight) and a metrics sample the maestro received after the switch was seen. A
  refused or failed command, an updater phase ``rolled_back``/``failed`` and a missed
  gate each count as one failure.
- More than ``max_failures`` failures halt the rollout (job state ``failed``), as does
  :meth:`Rollout.abort` (``stopped``). Agents of the current batch settle first; then,
  with ``rollback_on_abort``, every agent this rollout switched gets
  ``update{rollback: true}`` and is watched until it reports its old version again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

# An updater state older than the command (by the agent's clock) belongs to an earlier
# update: ignored when it carries no command id to tell.
CLOCK_SLACK_S: Final = 5.0
IN_FLIGHT: Final = frozenset({"pending", "installing", "switched"})


class Phase(StrEnum):
    """Where one agent stands in the rollout."""

    WAITING = "waiting"  # its batch has not started
    SENT = "sent"  # ``update`` sent; the updater has not reported on it yet
    INSTALLING = "installing"  # the updater has it (pending or installing)
    SWITCHED = "switched"  # runs the new version; the health gate is not passed yet
    HEALTHY = "healthy"  # passed the health gate (or was already on the version)
    FAILED = "failed"  # counts as a failure (``reason`` says why)
    ROLLING_BACK = "rolling_back"  # the rollout asked it to go back
    ROLLED_BACK = "rolled_back"  # back on its old version


SETTLED: Final = frozenset({Phase.HEALTHY, Phase.FAILED, Phase.ROLLED_BACK})


class Stage(StrEnum):
    CANARY = "canary"
    BATCHES = "batches"
    SETTLING = "settling"  # halted: the current batch's agents finish their gate
    ROLLING_BACK = "rolling_back"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class UpdateSeen:
    """An agent's ``Status.update`` (the host updater's progress), as reported."""

    phase: str
    to_version: str
    ts: float
    command_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """What the registry shows of one agent now (maestro clock for ``sample_at``)."""

    state: str  # online, late, offline, ...
    version: str | None
    update: UpdateSeen | None = None
    sample_at: float | None = None  # when the maestro received its newest sample

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Seen:
        """From ``Registry.view()`` (an unknown agent is state ``unknown``)."""
        raw = view.get("update")
        update = None
        if isinstance(raw, dict):
            update = UpdateSeen(
                phase=str(raw.get("phase")),
                to_version=str(raw.get("to_version")),
                ts=float(raw.get("ts") or 0.0),
                command_id=raw.get("command_id"),
                reason=raw.get("reason"),
            )
        metrics = view.get("metrics") or {}
        rx = metrics.get("rx_ts") if isinstance(metrics, dict) else None
        return cls(
            state=str(view.get("state")),
            version=view.get("version"),
            update=update,
            sample_at=float(rx) if isinstance(rx, int | float) else None,
        )


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``update`` with ``args`` to ``agent``; report its end with ``command_done``."""

    agent: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    version: str
    agents: tuple[str, ...]
    canary: int = 1
    batch_size: int = 10
    health_timeout_s: float = 180.0
    max_failures: int = 0
    rollback_on_abort: bool = True
    health_deadline_s: float | None = None  # passed on to the agents' updaters


@dataclass(slots=True)
class AgentProgress:
    id: str
    batch: int | None = None  # 0 is the canary; None: done before any batch
    phase: Phase = Phase.WAITING
    reason: str | None = None
    from_version: str | None = None
    version: str | None = None  # as last seen
    command_id: str | None = None
    sent_at: float | None = None
    switched_at: float | None = None  # maestro time the new version was first seen
    touched: bool = False  # this rollout switched it
    failed: bool = False  # counted among the failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "batch": self.batch,
            "phase": self.phase.value,
            "reason": self.reason,
            "from_version": self.from_version,
            "version": self.version,
            "command_id": self.command_id,
        }


def _up_to_date(seen: Seen, version: str) -> bool:
    in_flight = seen.update is not None and seen.update.phase in IN_FLIGHT
    return seen.version == version and not in_flight


class Rollout:
    """One rollout; drive it with :meth:`step` and :meth:`command_done`."""

    def __init__(self, plan: Plan, seen: dict[str, Seen], now: float) -> None:
        self.plan = plan
        self.state = "running"  # running | done | failed | stopped
        self.stage = Stage.CANARY
        self.stop_reason: str | None = None
        self.started_at = now
        self.ended_at: float | None = None
        self.agents = {agent: AgentProgress(agent) for agent in plan.agents}
        todo: list[str] = []
        for agent in plan.agents:
            progress = self.agents[agent]
            current = seen.get(agent)
            progress.version = current.version if current else None
            if current is not None and _up_to_date(current, plan.version):
                progress.phase = Phase.HEALTHY
                progress.reason = "already on this version"
            else:
                todo.append(agent)
        canary = todo[: plan.canary]
        rest = todo[plan.canary :]
        self.batches: list[list[str]] = [canary] if canary else []
        self.batches += [
            rest[i : i + plan.batch_size] for i in range(0, len(rest), plan.batch_size)
        ]
        for number, batch in enumerate(self.batches):
            for agent in batch:
                self.agents[agent].batch = number
        if plan.canary == 0 or not canary:
            self.stage = Stage.BATCHES
        self.current = -1  # index of the batch under way
        self._halt_state: str | None = None

    # -- reading --------------------------------------------------------------------------
    @property
    def failures(self) -> int:
        return sum(1 for p in self.agents.values() if p.failed)

    @property
    def ended(self) -> bool:
        return self.stage is Stage.ENDED

    def watching(self) -> list[str]:
        """The agents :meth:`step` judges now (the shell reads only these)."""
        if self.stage is Stage.ROLLING_BACK:
            return [a for a, p in self.agents.items() if p.phase is Phase.ROLLING_BACK]
        if self.ended:
            return []
        following = self.current + 1  # may start in this step, from what its agents show
        if self.state == "running" and following < len(self.batches):
            return self._batch() + self.batches[following]
        return self._batch()

    def phases(self) -> dict[str, int]:
        return dict(Counter(p.phase.value for p in self.agents.values()))

    def to_dict(self, *, with_agents: bool = True) -> dict[str, Any]:
        plan = self.plan
        out: dict[str, Any] = {
            "version": plan.version,
            "stage": self.stage.value,
            "batch": max(self.current, 0),
            "batches": len(self.batches),
            "canary": plan.canary,
            "health_timeout_s": plan.health_timeout_s,
            "rollback_on_abort": plan.rollback_on_abort,
            "phases": self.phases(),
            "failures": self.failures,
            "stop_reason": self.stop_reason,
        }
        if with_agents:
            out["agents"] = [self.agents[a].to_dict() for a in plan.agents]
        return out

    # -- input ----------------------------------------------------------------------------
    def sent(self, agent: str, command_id: str, now: float) -> None:
        """The shell recorded the command asked for (its id ties the updater's state)."""
        progress = self.agents[agent]
        progress.command_id = command_id
        progress.sent_at = now

    def command_done(self, agent: str, ok: bool, reason: str | None, now: float) -> None:
        """The final outcome of the command sent to ``agent`` (``reason`` when not ok)."""
        progress = self.agents[agent]
        if ok:
            return  # handed over, up to date or rollback requested: the status tells more
        if progress.phase is Phase.ROLLING_BACK:
            # e.g. busy: its own updater may still be rolling back; the watch decides.
            progress.reason = f"rollback command failed: {reason}"
        elif progress.phase not in SETTLED:
            self._fail(progress, f"command failed: {reason}")

    def abort(self, actor: str, now: float) -> bool:
        """A user stops the rollout; False if it was already halted or over."""
        if self.state != "running":
            return False
        self._halt("stopped", f"aborted by {actor}")
        return True

    def step(self, seen: dict[str, Seen], now: float) -> list[Send]:
        """Judge the agents under way against what is ``seen``; the commands to send."""
        if self.ended:
            return []
        if self.stage is Stage.ROLLING_BACK:
            return self._step_rollback(seen, now)
        for agent in self._batch():
            self._judge(self.agents[agent], seen.get(agent), now)
        if self.state == "running" and self.failures > self.plan.max_failures:
            self._halt(
                "failed",
                f"{self.failures} failed, more than max_failures={self.plan.max_failures}",
            )
        if not all(self.agents[a].phase in SETTLED for a in self._batch()):
            return []
        if self.state != "running":
            return self._start_rollback(now)
        return self._next_batch(seen, now)

    # -- batches --------------------------------------------------------------------------
    def _batch(self) -> list[str]:
        return self.batches[self.current] if 0 <= self.current < len(self.batches) else []

    def _next_batch(self, seen: dict[str, Seen], now: float) -> list[Send]:
        self.current += 1
        if self.current >= len(self.batches):
            self.state = "done"
            self._end(now)
            return []
        if self.current > 0 or self.plan.canary == 0:
            self.stage = Stage.BATCHES
        sends = []
        for agent in self._batch():
            progress = self.agents[agent]
            current = seen.get(agent)
            progress.from_version = current.version if current else None
            if current is not None and _up_to_date(current, self.plan.version):
                progress.phase = Phase.HEALTHY
                progress.reason = "already on this version"
                continue
            progress.phase = Phase.SENT
            progress.sent_at = now
            args: dict[str, Any] = {"version": self.plan.version}
            if self.plan.health_deadline_s is not None:
                args["health_deadline_s"] = self.plan.health_deadline_s
            sends.append(Send(agent, args))
        return sends

    def _judge(self, progress: AgentProgress, seen: Seen | None, now: float) -> None:
        if progress.phase in SETTLED or progress.phase is Phase.WAITING:
            return
        target = self.plan.version
        if seen is not None:
            progress.version = seen.version
            update = seen.update if self._fresh(progress, seen.update) else None
            if update is not None and update.to_version == target:
                if update.phase in ("rolled_back", "failed"):
                    why = update.reason or update.phase
                    self._fail(progress, f"updater: {update.phase} ({why})")
                    if update.phase == "rolled_back":
                        progress.phase = Phase.ROLLED_BACK
                    return
                if update.phase in ("pending", "installing"):
                    progress.phase = Phase.INSTALLING
                elif update.phase in ("switched", "healthy"):
                    self._switched(progress, now)
            if seen.version == target and progress.from_version != target:
                self._switched(progress, now)
            if (
                progress.switched_at is not None
                and seen.state == "online"
                and _up_to_date(seen, target)
                and (update is None or update.phase == "healthy")
                and seen.sample_at is not None
                and seen.sample_at > progress.switched_at
            ):
                progress.phase = Phase.HEALTHY
                progress.reason = None
                return
        sent_at = progress.sent_at if progress.sent_at is not None else now
        if now - sent_at > self.plan.health_timeout_s:
            self._fail(progress, f"not healthy within {self.plan.health_timeout_s:g} s")

    def _switched(self, progress: AgentProgress, now: float) -> None:
        progress.touched = True
        if progress.switched_at is None:
            progress.switched_at = now
        if progress.phase not in SETTLED:
            progress.phase = Phase.SWITCHED

    def _fresh(self, progress: AgentProgress, update: UpdateSeen | None) -> bool:
        if update is None:
            return False
        if update.command_id is not None and progress.command_id is not None:
            return update.command_id == progress.command_id
        sent_at = progress.sent_at or 0.0
        return update.ts >= sent_at - CLOCK_SLACK_S

    def _fail(self, progress: AgentProgress, reason: str) -> None:
        progress.phase = Phase.FAILED
        progress.reason = reason
        progress.failed = True

    # -- halting and rolling back ---------------------------------------------------------
    def _halt(self, state: str, reason: str) -> None:
        self.state = state
        self.stop_reason = reason
        self.stage = Stage.SETTLING

    def _start_rollback(self, now: float) -> list[Send]:
        back = [
            p
            for p in self.agents.values()
            if p.touched and p.phase in (Phase.HEALTHY, Phase.SWITCHED, Phase.FAILED)
        ]
        if not self.plan.rollback_on_abort or not back:
            self._end(now)
            return []
        self.stage = Stage.ROLLING_BACK
        for progress in back:
            progress.phase = Phase.ROLLING_BACK
            progress.sent_at = now
            progress.command_id = None
        return [Send(p.id, {"rollback": True}) for p in back]

    def _step_rollback(self, seen: dict[str, Seen], now: float) -> list[Send]:
        for progress in self.agents.values():
            if progress.phase is not Phase.ROLLING_BACK:
                continue
            current = seen.get(progress.id)
            if current is not None:
                progress.version = current.version
                back = current.version == progress.from_version and current.state == "online"
                if back:
                    progress.phase = Phase.ROLLED_BACK
                    done = f"rolled back by the rollout to {progress.from_version}"
                    prev = progress.reason if progress.failed else None
                    progress.reason = done if prev is None else f"{prev}; {done}"
                    continue
            if now - (progress.sent_at or now) > self.plan.health_timeout_s:
                why = f"not back on {progress.from_version} within {self.plan.health_timeout_s:g} s"
                progress.phase = Phase.FAILED
                progress.reason = why if progress.reason is None else f"{why}; {progress.reason}"
        if all(p.phase is not Phase.ROLLING_BACK for p in self.agents.values()):
            self._end(now)
        return []

    def _end(self, now: float) -> None:
        self.stage = Stage.ENDED
        self.ended_at = now
