"""The values the alert engine works on: alert and silence records, its events, its
actions and its state. All immutable; the engine returns new ones."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from arete.payloads import ActiveAlert, AlertPhase, AlertSeverity
from maestro.alerts.rules import Rule
from maestro.alerts.settings import AlertSettings
from maestro.notify.message import Notice


class Told(StrEnum):
    """What the notification channels were last told about an incident."""

    NONE = "none"
    FIRING = "firing"
    RESOLVED = "resolved"


def make_alert_id(rule: str, agent: str, started_at: float) -> str:
    """Stable, short (it rides in Telegram's 64-byte callback data) and unique per incident."""
    digest = hashlib.blake2b(f"{rule}\0{agent}\0{started_at!r}".encode(), digest_size=8)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One incident of one rule on one agent, from pending to resolved."""

    id: str
    rule: str
    agent: str
    severity: AlertSeverity
    phase: AlertPhase
    started_at: float  # the condition first held
    since: float  # entered the current phase
    summary: str
    value: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    clear_since: float | None = None  # firing, but the condition has been clear since
    acked_by: str | None = None
    acked_at: float | None = None
    told: Told = Told.NONE
    told_at: float | None = None
    flaps: int = 0  # times it came back within reopen_s of resolving

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.agent)

    @property
    def is_open(self) -> bool:
        return self.phase is not AlertPhase.RESOLVED

    def to_active(self, silenced_until: float | None) -> ActiveAlert:
        return ActiveAlert(
            id=self.id,
            rule=self.rule,
            severity=self.severity,
            phase=self.phase,
            since=self.since,
            summary=self.summary[:1024],
            value=self.value,
            acked_by=self.acked_by,
            silenced_until=silenced_until,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "agent": self.agent,
            "severity": str(self.severity),
            "phase": str(self.phase),
            "started_at": self.started_at,
            "since": self.since,
            "summary": self.summary,
            "value": self.value,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "acked_by": self.acked_by,
            "acked_at": self.acked_at,
            "notified": str(self.told),
            "notified_at": self.told_at,
            "flaps": self.flaps,
        }


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """Mutes notifications of matching alerts (agent and/or rule) until ``ends_at``."""

    id: str
    agent: str | None
    rule: str | None
    starts_at: float
    ends_at: float
    created_by: str
    created_at: float
    reason: str = ""
    ended_by: str | None = None
    ended_at: float | None = None

    def matches(self, agent: str, rule: str) -> bool:
        return (self.agent is None or self.agent == agent) and (
            self.rule is None or self.rule == rule
        )

    def active(self, now: float) -> bool:
        return self.ended_at is None and self.starts_at <= now < self.ends_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "rule": self.rule,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "reason": self.reason,
            "ended_by": self.ended_by,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True, slots=True)
class AgentView:
    """The liveness the registry last reported for an agent."""

    state: str
    clean: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    rules: tuple[Rule, ...]
    group_wait_s: float = 2.0
    repeat_s: float = 4 * 3600.0
    reopen_s: float = 600.0
    stale_after_s: float = 30.0
    flap_hold_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: AlertSettings, rules: tuple[Rule, ...]) -> EngineConfig:
        return cls(
            rules=rules,
            group_wait_s=settings.group_wait_s,
            repeat_s=settings.repeat_s,
            reopen_s=settings.reopen_s,
            stale_after_s=settings.stale_after_s,
            flap_hold_s=settings.flap_hold_s,
        )

    def rule(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


@dataclass(frozen=True, slots=True)
class Condition:
    """The last word about a condition rule's condition on one subject."""

    holds: bool
    value: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EngineState:
    config: EngineConfig
    # (rule, agent) -> the current incident: open, or resolved lately (it may reopen).
    alerts: Mapping[tuple[str, str], AlertRecord] = field(default_factory=dict)
    agents: Mapping[str, AgentView] = field(default_factory=dict)
    silences: Mapping[str, SilenceRecord] = field(default_factory=dict)
    groups: Mapping[str, float] = field(default_factory=dict)  # agent -> notice goes out at
    # (rule, subject) -> the condition as last reported (condition rules).
    conditions: Mapping[tuple[str, str], Condition] = field(default_factory=dict)

    def find(self, alert_id: str) -> AlertRecord | None:
        return next((a for a in self.alerts.values() if a.id == alert_id), None)

    def silenced_until(self, alert: AlertRecord, now: float) -> float | None:
        ends = [
            s.ends_at
            for s in self.silences.values()
            if s.active(now) and s.matches(alert.agent, alert.rule)
        ]
        return max(ends) if ends else None

    def open_alerts(self, agent: str | None = None) -> list[AlertRecord]:
        return sorted(
            (a for a in self.alerts.values() if a.is_open and agent in (None, a.agent)),
            key=lambda a: (a.started_at, a.rule),
        )


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentObserved:
    agent: str
    state: str
    clean: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentsKnown:
    """The liveness of agents known at startup (no transition made them news): metric
    rules cover them at once. An agent already observed keeps what was observed."""

    agents: Mapping[str, AgentView]


@dataclass(frozen=True, slots=True)
class ConditionObserved:
    """Condition rule ``rule`` on ``subject`` holds or not (also advances every timer)."""

    rule: str
    subject: str
    holds: bool
    value: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MetricsObserved:
    """``{agent: (sample ts, {field: value})}``; also advances every timer (a tick)."""

    latest: Mapping[str, tuple[float, Mapping[str, Any]]]
    hold: bool = False  # no judgement of metric rules now (e.g. the broker link is down)


@dataclass(frozen=True, slots=True)
class AgentRemoved:
    """The agent was removed (``arete agents remove``): its open incidents resolve without
    a message, and it is forgotten (no timers, no ``alerts/<agent>`` snapshot)."""

    agent: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Advance timers only (pending delays, clear delays, groups, reminders, silences)."""


@dataclass(frozen=True, slots=True)
class Acknowledge:
    alert_id: str
    actor: str


@dataclass(frozen=True, slots=True)
class AddSilence:
    silence: SilenceRecord


@dataclass(frozen=True, slots=True)
class EndSilence:
    silence_id: str
    actor: str


Event = (
    AgentObserved
    | AgentRemoved
    | AgentsKnown
    | ConditionObserved
    | MetricsObserved
    | Tick
    | Acknowledge
    | AddSilence
    | EndSilence
)


# -- actions -----------------------------------------------------------------------------
AlertChange = Literal["pending", "firing", "resolved", "reopened", "acked", "notified"]


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """Store the record (and tell the event bus); ``notified`` changes only bookkeeping."""

    alert: AlertRecord
    change: AlertChange


@dataclass(frozen=True, slots=True)
class SilenceChanged:
    silence: SilenceRecord
    change: Literal["added", "ended"]


@dataclass(frozen=True, slots=True)
class Notify:
    """Queue ``notice`` on every channel (in the same transaction as the changes)."""

    notice: Notice


@dataclass(frozen=True, slots=True)
class Publish:
    """Republish the retained ``alerts/<agent>`` snapshot."""

    agent: str


Action = AlertChanged | SilenceChanged | Notify | Publish
