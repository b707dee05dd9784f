"""What the maestro learns about each agent beyond liveness, from what arrives and when.

Pure bookkeeping, fed by the registry with the maestro's clock:

* **receive time** of each agent's newest sample: metric rules judge freshness by it,
  never by the agent's own ``ts`` (an agent 2 h ahead would look fresh for 2 h);
* **clock offset** (agent clock minus maestro clock): the largest ``ts - received`` of
  the last one to two ``OFFSET_BUCKET_S`` (a max-filter: delivery delay only ever makes
  a sample look older, so the largest value is the closest; replayed samples look very
  old and never win while live ones flow);
* **sample interval**, from the agent's own timestamps and seqs, so that "no samples"
  means several intervals without one (``metrics_stalled``);
* **births** (online statuses of new connections) with their host: an id whose births
  alternate between hosts is one identity used from two machines (``identity_conflict``);
* **steady contacts of another epoch** from a silent agent (:class:`SteadyEpochs`).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from maestro.liveness import AgentLive, Liveness

log = logging.getLogger("arete.maestro.registry")

OFFSET_BUCKET_S: Final = 30.0
IDENTITY_WINDOW_S: Final = 600.0
MAX_BIRTHS: Final = 32
STALL_INTERVALS: Final = 3.0  # "stalled" waits at least this many sample intervals
STEADY_CONTACTS: Final = 3  # contacts of another epoch that make it the agent's connection


@dataclass(slots=True)
class _Agent:
    row: object = None  # the newest sample row seen (by identity)
    rx: float | None = None  # maestro time it was seen
    ts: float | None = None
    seq: int | None = None
    interval: float = 1.0
    bucket_start: float = 0.0
    bucket_max: float | None = None
    previous_max: float | None = None
    births: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=MAX_BIRTHS))


class AgentWatch:
    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}

    def _of(self, agent_id: str) -> _Agent:
        known = self._agents.get(agent_id)
        if known is None:
            known = self._agents[agent_id] = _Agent()
        return known

    # -- samples ---------------------------------------------------------------------------
    def on_sample(self, agent_id: str, row: object, ts: float, seq: int, rx: float) -> bool:
        """The newest sample row of ``agent_id`` as seen at ``rx``; False if already seen."""
        agent = self._of(agent_id)
        if agent.row is row:
            return False
        if agent.seq is not None and agent.ts is not None and seq > agent.seq:
            step = (ts - agent.ts) / (seq - agent.seq)
            if 0 < step < 86400:
                agent.interval = step
        agent.row, agent.rx, agent.ts, agent.seq = row, rx, ts, seq
        offset = ts - rx
        if rx - agent.bucket_start >= OFFSET_BUCKET_S:
            recent = rx - agent.bucket_start < 2 * OFFSET_BUCKET_S
            agent.previous_max = agent.bucket_max if recent else None
            agent.bucket_start, agent.bucket_max = rx, None
        if agent.bucket_max is None or offset > agent.bucket_max:
            agent.bucket_max = offset
        return True

    def received_at(self, agent_id: str) -> float | None:
        agent = self._agents.get(agent_id)
        return agent.rx if agent is not None else None

    def offset(self, agent_id: str) -> float | None:
        """The agent's clock minus the maestro's, in seconds (None before any sample)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.bucket_max is None:
            return None
        if agent.previous_max is None:
            return agent.bucket_max
        return max(agent.bucket_max, agent.previous_max)

    def stalled_for(self, agent_id: str, since: float, now: float, limit_s: float) -> float | None:
        """Seconds without a sample (counted from ``since`` at the earliest), if that is
        past ``limit_s`` and past a few of the agent's own sample intervals; else None.
        Only agents that sent samples before are judged."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.rx is None:
            return None
        silent = now - max(agent.rx, since)
        if silent > max(limit_s, STALL_INTERVALS * agent.interval):
            return silent
        return None

    def forget(self, agent_id: str) -> None:
        """A removed agent: what was seen of it no longer counts."""
        self._agents.pop(agent_id, None)

    # -- births ----------------------------------------------------------------------------
    def on_birth(self, agent_id: str, host: str, at: float) -> None:
        self._of(agent_id).births.append((at, host))

    def conflicting_hosts(self, agent_id: str, now: float) -> list[str]:
        """The hosts whose connections took turns within ``IDENTITY_WINDOW_S`` (at least
        A, B, A): one identity used from two machines. Empty when there is no sign of it
        (a single move from one host to another is not a conflict)."""
        agent = self._agents.get(agent_id)
        if agent is None or len(agent.births) < 3:
            return []  # a conflict takes three births at least (A, B, A)
        recent = [host for at, host in agent.births if now - at <= IDENTITY_WINDOW_S]
        changes = sum(1 for a, b in itertools.pairwise(recent) if a != b)
        return sorted(set(recent)) if changes >= 2 else []


# -- what to report ------------------------------------------------------------------------
Report = tuple[str, str, bool, float | None, str]
"""``(rule, agent, holds, value, detail)`` of a condition rule."""


def conditions(
    watch: AgentWatch,
    states: Mapping[str, AgentLive],
    now: float,
    *,
    stall_after_s: float | None,
    skew_s: float | None,
    disk_full: Callable[[str], bool] | None = None,
    reported: Mapping[tuple[str, str], bool] | None = None,
) -> Iterator[Report]:
    """The current verdict of every agent's conditions (a rule whose limit is None is off).

    ``disk_full``: what each agent's newest status says of its state disk (``Status.disk_full``):
    an agent that cannot keep its outbox any more loses samples while disconnected.
    ``reported``: the verdicts told already (``(rule, agent) -> holds``); only the ones that
    differ are yielded, so a steady fleet of thousands costs no reports."""
    told = reported if reported is not None else {}
    for agent_id, state in list(states.items()):
        connected = state.state.connected
        if disk_full is not None:
            full = connected and disk_full(agent_id)
            if told.get(("agent_disk_full", agent_id), False) != full:
                yield ("agent_disk_full", agent_id, full, None, "state disk")
        if stall_after_s is not None:
            since = max(state.since, state.judged_from)
            silent = (
                watch.stalled_for(agent_id, since, now, stall_after_s)
                if state.state is Liveness.ONLINE
                else None
            )
            if told.get(("metrics_stalled", agent_id), False) != (silent is not None):
                yield ("metrics_stalled", agent_id, silent is not None, silent, "")
        offset = watch.offset(agent_id)
        if skew_s is not None and offset is not None:
            skewed = abs(offset) > skew_s and connected
            if told.get(("clock_skew", agent_id), False) != skewed:
                detail = "ahead" if offset > 0 else "behind"
                yield ("clock_skew", agent_id, skewed, round(abs(offset), 1), detail)
        hosts = watch.conflicting_hosts(agent_id, now)
        if told.get(("identity_conflict", agent_id), False) != bool(hosts):
            yield ("identity_conflict", agent_id, bool(hosts), None, ", ".join(hosts))


class Reporter:
    """Tells observers (the alert service) when a condition starts or stops holding, and
    which agents are known at startup; an observer's failure is logged, never raised."""

    def __init__(self, observers: list[Any]) -> None:
        self.observers = observers  # shared with the registry
        self._reported: dict[tuple[str, str], bool] = {}

    @property
    def reported(self) -> Mapping[tuple[str, str], bool]:
        """What each ``(rule, subject)`` was last reported as (absent: never held)."""
        return self._reported

    def condition(
        self, rule: str, subject: str, holds: bool, now: float, *, value: float | None = None,
        detail: str = "",
    ) -> None:  # fmt: skip
        key = (rule, subject)
        if self._reported.get(key, False) == holds:
            return
        self._reported[key] = holds
        if holds:
            log.info("condition %s holds for %s %s", rule, subject, detail)
        for observer in self.observers:
            observe = getattr(observer, "observe_condition", None)
            if observe is None:
                continue
            try:
                observe(rule, subject, holds, now, value=value, detail=detail)
            except Exception:
                log.exception("an observer failed on condition %s of %s", rule, subject)

    def forget(self, subject: str) -> None:
        """A removed agent: its conditions are no longer reported (the alerts forget it)."""
        for key in [k for k in self._reported if k[1] == subject]:
            del self._reported[key]

    def known(self, agents: Mapping[str, tuple[str, bool, Mapping[str, str]]]) -> None:
        for observer in self.observers:
            observe = getattr(observer, "observe_known", None)
            if observe is None:
                continue
            try:
                observe(agents)
            except Exception:
                log.exception("an observer failed on the known agents")


class SteadyEpochs:
    """Contacts of another epoch than a silent (late, critical) agent's own: after
    ``STEADY_CONTACTS`` of one epoch over a heartbeat period, that epoch is the
    connection that talks."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float, float, int]] = {}  # epoch, first, last, n

    def forget(self, agent_id: str) -> None:
        self._seen.pop(agent_id, None)

    def observe(
        self, agent_id: str, state: AgentLive, contact: tuple[int, float] | None
    ) -> int | None:
        """The epoch to adopt now, if any."""
        if contact is None or contact[0] == state.epoch or state.state is Liveness.ONLINE:
            self._seen.pop(agent_id, None)
            return None
        epoch, at = contact
        known = self._seen.get(agent_id)
        if known is None or known[0] != epoch:
            known = (epoch, at, at, 1)
        elif at > known[2]:
            known = (epoch, known[1], at, known[3] + 1)
        self._seen[agent_id] = known
        _, first, _, count = known
        if count < STEADY_CONTACTS or at - first < state.heartbeat_s:
            return None
        del self._seen[agent_id]
        return epoch
