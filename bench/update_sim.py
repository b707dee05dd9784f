"""Simulated agents' side of the ``update`` command, for the load generator (sans-I/O).

A real agent hands a verified release to its host's updater, which installs it,
switches, restarts the agent and reports its progress in the agent's retained status
(``Status.update``, docs/updates.md). :class:`UpdateSim` plays both for many virtual
agents without installing anything: it answers ``update`` at once (``handed_over``,
``up_to_date`` or ``rollback_requested``) and then moves each agent's status through
``pending`` -> ``installing`` -> ``switched`` (the new version) -> ``healthy``. The
epoch stays: the load generator's samples carry one fixed epoch, so a "restart" here
is only the version changing. An agent listed in ``broken`` goes back to its old
version with ``rolled_back`` instead, as an updater whose new version never proved
healthy does. Other commands get a ``failed`` reply (``not_supported``).

It returns what to publish (:class:`Out`); ``bench/loadgen.py --answer-updates`` does
the publishing over its connections, the samples keep flowing meanwhile.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from arete.commands import UpdateArgs, UpdateResult, parse_args
from arete.payloads import (
    AgentState,
    ErrorInfo,
    Reply,
    ReplyState,
    Status,
    UpdatePhase,
    UpdateState,
    decode_command,
    encode,
)
from arete.topics import Topics


@dataclass(frozen=True, slots=True)
class Out:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(slots=True)
class SimAgent:
    name: str
    version: str
    epoch: int = 1
    previous: str | None = None
    update: UpdateState | None = None
    busy: bool = False


@dataclass(order=True, frozen=True, slots=True)
class _Due:
    at: float
    seq: int
    name: str = field(compare=False)
    phase: UpdatePhase = field(compare=False)
    from_version: str = field(compare=False)
    to_version: str = field(compare=False)
    command_id: str = field(compare=False)


class UpdateSim:
    """Statuses and ``update`` answers of the virtual agents ``names``."""

    def __init__(
        self,
        topics: Topics,
        names: Iterable[str],
        *,
        version: str,
        heartbeat_s: float,
        labels: dict[str, str] | None = None,
        install_s: float = 2.0,
        healthy_s: float = 1.0,
        broken: Iterable[str] = (),
    ) -> None:
        self.topics = topics
        self.agents = {name: SimAgent(name, version) for name in names}
        self.heartbeat_s = heartbeat_s
        self.labels = dict(labels or {})
        self.install_s = install_s
        self.healthy_s = healthy_s
        self.broken = set(broken)
        self._due: list[_Due] = []
        self._seq = 0
        self.answered = 0

    def status(self, name: str, now: float) -> Out:
        agent = self.agents[name]
        status = Status(
            state=AgentState.ONLINE,
            epoch=agent.epoch,
            ts=now,
            version=agent.version,
            host=name,
            labels=self.labels,
            heartbeat_s=self.heartbeat_s,
            update=agent.update,
        )
        return Out(self.topics.status(name), encode(status), retain=True)

    def on_message(self, topic: str, payload: bytes, now: float) -> list[Out]:
        """A message on ``<root>/cmd/<id>``: the reply (and status) to publish."""
        try:
            agent = self.agents.get(self.topics.parse(topic).agent_id)
            command = decode_command(payload)
        except (msgspec.DecodeError, ValueError):
            return []
        if agent is None:
            return []  # another worker's agent
        reply_topic = self.topics.reply(agent.name)
        args: UpdateArgs | None = None
        code, message = "not_supported", ""
        if command.name == "update":
            try:
                parsed = parse_args("update", command.args)
                assert isinstance(parsed, UpdateArgs)
                args = parsed
            except (msgspec.ValidationError, ValueError) as exc:
                code, message = "bad_args", str(exc)
        if args is not None:
            self.answered += 1
            if agent.busy:
                code, args = "busy", None
            elif args.rollback and agent.previous is None:
                code, args = "install_failed", None
        if args is None:
            return [self._failed(reply_topic, command.id, code, now, message)]
        if not args.rollback and args.version == agent.version:
            ok = self._ok(reply_topic, command.id, agent, agent.version, "up_to_date", now=now)
            return [ok]
        return self._hand_over(agent, command.id, args, reply_topic, now)

    def _hand_over(
        self, agent: SimAgent, command_id: str, args: UpdateArgs, reply_topic: str, now: float
    ) -> list[Out]:
        target = agent.previous if args.rollback else args.version
        assert target is not None
        state = "rollback_requested" if args.rollback else "handed_over"
        out = [self._ok(reply_topic, command_id, agent, target, state, now=now)]
        agent.busy = True
        start = UpdatePhase.INSTALLING if args.rollback else UpdatePhase.PENDING
        agent.update = UpdateState(
            phase=start,
            from_version=agent.version,
            to_version=target,
            ts=now,
            command_id=command_id,
        )
        out.append(self.status(agent.name, now))
        end = UpdatePhase.HEALTHY
        if not args.rollback and agent.name in self.broken:
            end = UpdatePhase.ROLLED_BACK
        steps = [
            (self.install_s / 2, UpdatePhase.INSTALLING),
            (self.install_s, UpdatePhase.SWITCHED),
            (self.install_s + self.healthy_s, end),
        ]
        for delay, phase in steps:
            self._seq += 1
            heapq.heappush(
                self._due,
                _Due(now + delay, self._seq, agent.name, phase, agent.version, target, command_id),
            )
        return out

    def due(self, now: float) -> list[Out]:
        """Status changes whose time has come."""
        out = []
        while self._due and self._due[0].at <= now:
            step = heapq.heappop(self._due)
            agent = self.agents[step.name]
            reason = None
            if step.phase is UpdatePhase.SWITCHED:
                agent.previous, agent.version = step.from_version, step.to_version
            elif step.phase is UpdatePhase.ROLLED_BACK:
                agent.previous, agent.version = None, step.from_version
                reason = f"no healthy report in {self.healthy_s:g} s"
            if step.phase in (UpdatePhase.HEALTHY, UpdatePhase.ROLLED_BACK):
                agent.busy = False
            agent.update = UpdateState(
                phase=step.phase,
                from_version=step.from_version,
                to_version=step.to_version,
                ts=now,
                command_id=step.command_id,
                reason=reason,
            )
            out.append(self.status(agent.name, now))
        return out

    def _ok(
        self, topic: str, command_id: str, agent: SimAgent, target: str, state: str, *, now: float
    ) -> Out:
        result = UpdateResult(state=state, from_version=agent.version, to_version=target)
        reply = Reply(id=command_id, state=ReplyState.OK, ts=now, result=result)
        return Out(topic, encode(reply))

    def _failed(self, topic: str, command_id: str, code: str, now: float, message: str = "") -> Out:
        error = ErrorInfo(code, message or f"simulated agent: {code}")
        return Out(
            topic, encode(Reply(id=command_id, state=ReplyState.FAILED, ts=now, error=error))
        )
