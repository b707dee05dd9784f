"""Alerts: a pure rule engine (pending -> firing -> resolved) and the service around it."""

from __future__ import annotations

from maestro.alerts.engine import evaluate, initial_state, restore
from maestro.alerts.model import AlertRecord, EngineConfig, EngineState, SilenceRecord
from maestro.alerts.rules import BUILTIN_RULES, Rule, load_rules
from maestro.alerts.service import AlertService
from maestro.alerts.settings import AlertSettings, RuleOverride
from maestro.alerts.tables import ALERT_MIGRATIONS

__all__ = [
    "ALERT_MIGRATIONS",
    "BUILTIN_RULES",
    "AlertRecord",
    "AlertService",
    "AlertSettings",
    "EngineConfig",
    "EngineState",
    "Rule",
    "RuleOverride",
    "SilenceRecord",
    "evaluate",
    "initial_state",
    "load_rules",
    "restore",
]
