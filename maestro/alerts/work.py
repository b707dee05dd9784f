"""The mutable working copy of the alert engine's state for one evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from maestro.alerts.model import (
    Action,
    AgentView,
    AlertChange,
    AlertChanged,
    AlertRecord,
    Condition,
    EngineConfig,
    EngineState,
    Publish,
    SilenceRecord,
)
from maestro.alerts.rules import MAESTRO_SCOPE


@dataclass
class Work:
    """A mutable copy of the state for one evaluation, and the actions it produced."""

    config: EngineConfig
    alerts: dict[tuple[str, str], AlertRecord]
    agents: dict[str, AgentView]
    silences: dict[str, SilenceRecord]
    groups: dict[str, float]
    conditions: dict[tuple[str, str], Condition] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)  # agents whose snapshot changed

    @classmethod
    def of(cls, state: EngineState) -> Work:
        return cls(
            state.config,
            dict(state.alerts),
            dict(state.agents),
            dict(state.silences),
            dict(state.groups),
            dict(state.conditions),
        )

    def freeze(self) -> tuple[EngineState, list[Action]]:
        actions = self.actions + [Publish(agent) for agent in sorted(self.dirty)]
        return self.view(), actions

    def change(self, alert: AlertRecord, change: AlertChange) -> None:
        self.alerts[alert.key] = alert
        self.actions.append(AlertChanged(alert, change))
        rule = self.config.rule(alert.rule)
        if change != "notified" and (rule is None or rule.scope != MAESTRO_SCOPE):
            self.dirty.add(alert.agent)  # replicas have no alerts/<id> snapshot

    def view(self) -> EngineState:
        return EngineState(
            self.config, self.alerts, self.agents, self.silences, self.groups, self.conditions
        )
