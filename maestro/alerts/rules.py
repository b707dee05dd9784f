"""Alert rules: the built-ins, their overrides and custom threshold rules from TOML.

Three kinds of rule:

* state rules follow the liveness the registry reports (``online``, ``late``,
  ``critical``, ``offline``, ``stopping``): ``agent_critical`` (missed heartbeats) and
  ``agent_offline`` (connection lost without a clean stop);
* metric rules compare one sample field (``maestro.store.rows.FIELDS``) with a
  threshold: ``cpu_high``, ``mem_high``, ``disk_high`` and every custom rule;
* condition rules follow a condition some part of the maestro reports (holds or not,
  with a value) through ``AlertService.observe_condition``: ``broker_unreachable`` (this
  replica's own broker link, subject ``maestro:<replica>``), ``metrics_stalled``,
  ``clock_skew``, ``identity_conflict`` and ``agent_disk_full`` (agents). A new one is a
  :func:`condition_rule` in :data:`BUILTIN_RULES` plus one call where the condition is
  known.

Every rule has a ``for_s`` (how long the condition must hold before the alert fires)
and a ``clear_for_s`` (how long it must stay clear before the alert resolves).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arete.payloads import AlertSeverity
from maestro.alerts.settings import AlertSettings, RuleOverride
from maestro.errors import ConfigError
from maestro.store.rows import FIELD_SET, FIELDS

Op = Literal[">", ">=", "<", "<="]
_M = TypeVar("_M", bound=BaseModel)
RULE_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")
SUMMARY_KEYS: Final = frozenset({"agent", "rule", "field", "op", "threshold", "value", "detail"})
OFFLINE: Final = "offline"
MAESTRO_SCOPE: Final = "maestro"  # a condition of a maestro replica, not of an agent
LIVE_STATES: Final = frozenset({"online", "late"})

_COMPARE: Final = {
    ">": lambda value, threshold: value > threshold,
    ">=": lambda value, threshold: value >= threshold,
    "<": lambda value, threshold: value < threshold,
    "<=": lambda value, threshold: value <= threshold,
}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    severity: AlertSeverity
    for_s: float
    clear_for_s: float
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""  # str.format template over SUMMARY_KEYS; empty: a generated one
    builtin: bool = False
    enabled: bool = True
    # State rules: fire in ``states``, and once firing stay firing in ``keep_states``.
    states: frozenset[str] = frozenset()
    keep_states: frozenset[str] = frozenset()
    clean_stops: bool = False  # whether a clean stop's "offline" counts
    # Metric rules.
    field: str | None = None
    op: Op | None = None
    threshold: float | None = None  # condition rules may use one too (their reporter does)
    # Condition rules (reported by the maestro: see the module docstring).
    condition: bool = False
    scope: str = "agent"  # or MAESTRO_SCOPE: the subject is a replica, not an agent

    @property
    def is_metric(self) -> bool:
        return self.field is not None

    @property
    def is_state(self) -> bool:
        return not self.is_metric and not self.condition

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.labels.items())

    def state_holds(self, state: str, clean: bool, *, firing: bool) -> bool:
        """Whether liveness ``state`` meets this state rule's condition."""
        if state == OFFLINE and clean and not self.clean_stops:
            return False
        return state in self.states or (firing and state in self.keep_states)

    def value_holds(self, value: float) -> bool:
        if self.op is None or self.threshold is None:
            return False
        return bool(_COMPARE[self.op](value, self.threshold))

    def describe(self, agent: str, value: float | None, detail: str = "") -> str:
        """The one-line summary an alert of this rule shows."""
        if self.summary:
            return self.summary.format_map(
                {
                    "agent": agent,
                    "rule": self.name,
                    "field": self.field or "",
                    "op": self.op or "",
                    "threshold": _num(self.threshold),
                    "value": _num(value),
                    "detail": detail,
                }
            )
        if not self.is_metric:
            return f"{agent}: {self.name}"
        return (
            f"{agent}: {self.field} {_num(value)} {self.op} {_num(self.threshold)}"
            f" for {_duration(self.for_s)}"
        )


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def condition_rule(
    name: str,
    severity: AlertSeverity,
    *,
    for_s: float,
    clear_for_s: float,
    summary: str,
    threshold: float | None = None,
    scope: str = "agent",
) -> Rule:
    """A built-in condition rule (see the module docstring)."""
    return Rule(
        name, severity, for_s=for_s, clear_for_s=clear_for_s, summary=summary, builtin=True,
        threshold=threshold, condition=True, scope=scope,
    )  # fmt: skip


BUILTIN_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "agent_critical", AlertSeverity.WARNING, for_s=0.0, clear_for_s=30.0, builtin=True,
        states=frozenset({"critical"}), keep_states=frozenset({OFFLINE}),
        summary="{agent} missed its heartbeats",
    ),
    Rule(
        "agent_offline", AlertSeverity.CRITICAL, for_s=0.0, clear_for_s=30.0, builtin=True,
        states=frozenset({OFFLINE}), summary="{agent} is offline (connection lost)",
    ),
    Rule(
        "cpu_high", AlertSeverity.WARNING, for_s=300.0, clear_for_s=60.0, builtin=True,
        field="cpu", op=">", threshold=90.0,
        summary="{agent}: CPU at {value}% (over {threshold}%)",
    ),
    Rule(
        "mem_high", AlertSeverity.WARNING, for_s=300.0, clear_for_s=60.0, builtin=True,
        field="mem", op=">", threshold=90.0,
        summary="{agent}: memory at {value}% (over {threshold}%)",
    ),
    Rule(
        "disk_high", AlertSeverity.WARNING, for_s=600.0, clear_for_s=300.0, builtin=True,
        field="disk", op=">", threshold=90.0,
        summary="{agent}: disk at {value}% (over {threshold}%)",
    ),
    condition_rule(
        "broker_unreachable", AlertSeverity.CRITICAL, for_s=15.0, clear_for_s=5.0,
        scope=MAESTRO_SCOPE,
        summary="{agent} lost its broker link: agents are not judged until it is back",
    ),
    condition_rule(
        "maestro_disk_full", AlertSeverity.CRITICAL, for_s=0.0, clear_for_s=30.0,
        scope=MAESTRO_SCOPE,
        summary="{agent}: data disk full ({detail}); decided changes wait in memory",
    ),
    condition_rule(
        "metrics_stalled", AlertSeverity.WARNING, for_s=0.0, clear_for_s=10.0, threshold=30.0,
        summary="{agent} sends heartbeats but no samples for {value} s",
    ),
    condition_rule(
        "clock_skew", AlertSeverity.WARNING, for_s=60.0, clear_for_s=60.0, threshold=10.0,
        summary="{agent}: clock {detail} by {value} s (over {threshold} s)",
    ),
    condition_rule(
        "agent_disk_full", AlertSeverity.WARNING, for_s=0.0, clear_for_s=30.0,
        summary="{agent}: its {detail} is full; samples it cannot send now are lost (counted "
        "in dropped)",
    ),
    condition_rule(
        "identity_conflict", AlertSeverity.CRITICAL, for_s=0.0, clear_for_s=300.0,
        summary="{agent}: one agent id connected from two machines ({detail})",
    ),
)  # fmt: skip
BUILTIN_NAMES: Final = frozenset(rule.name for rule in BUILTIN_RULES)


class CustomRule(BaseModel):
    """One ``[[rules]]`` table of the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # pydantic's (Rust) regex: "$" is the very end of the text, no trailing-newline leeway.
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    field: str
    op: Op
    threshold: float
    for_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 60.0
    clear_for_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 60.0
    severity: AlertSeverity = AlertSeverity.WARNING
    labels: dict[str, str] = {}
    summary: Annotated[str, Field(max_length=300)] = ""
    enabled: bool = True


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[dict[str, Any]] = []
    builtin: dict[str, dict[str, Any]] = {}


def load_rules(settings: AlertSettings) -> tuple[Rule, ...]:
    """The enabled rules: built-ins with their overrides, then the custom ones.

    Overrides come from ``settings.builtin`` and then from ``[builtin.<name>]`` tables of
    the rules file. Raises :class:`ConfigError` naming the file and the rule.
    """
    where = "alerts.builtin"
    rules = {rule.name: rule for rule in BUILTIN_RULES}
    for name, override in settings.builtin.items():
        rules[name] = apply_override(rules.get(name), name, override, where)
    custom: list[Rule] = []
    if settings.rules_file is not None:
        path = settings.rules_file
        document = _read_toml(path)
        for name, table in document.builtin.items():
            override = _validated(RuleOverride, table, f"{path}: [builtin.{name}]")
            rules[name] = apply_override(rules.get(name), name, override, f"{path}: [builtin]")
        custom = parse_custom_rules(document.rules, str(path))
    enabled = [rule for rule in rules.values() if rule.enabled]
    return (*enabled, *custom)


def apply_override(rule: Rule | None, name: str, override: RuleOverride, where: str) -> Rule:
    if rule is None:
        known = ", ".join(sorted(BUILTIN_NAMES))
        raise ConfigError(f"{where}: {name!r} is not a built-in rule (those are: {known})")
    if override.threshold is not None and rule.threshold is None:
        raise ConfigError(f"{where}: rule {name!r} has no threshold")
    if override.clean_stops is not None and name != "agent_offline":
        raise ConfigError(f"{where}: clean_stops applies to agent_offline only")
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("enabled", override.enabled),
            ("severity", override.severity),
            ("for_s", override.for_s),
            ("clear_for_s", override.clear_for_s),
            ("threshold", override.threshold),
            ("labels", override.labels),
            ("clean_stops", override.clean_stops),
        )
        if value is not None
    }
    return replace(rule, **changes)


def parse_custom_rules(tables: list[dict[str, Any]], source: str) -> list[Rule]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, start=1):
        label = table.get("name") if isinstance(table.get("name"), str) else f"#{index}"
        where = f"{source}: rule {label!r}"
        parsed = _validated(CustomRule, table, where)
        if parsed.name in BUILTIN_NAMES:
            raise ConfigError(
                f"{where}: the name is a built-in rule; change it with [builtin.{parsed.name}]"
            )
        if parsed.name in seen:
            raise ConfigError(f"{where}: a second rule with this name")
        seen.add(parsed.name)
        if parsed.field not in FIELD_SET:
            raise ConfigError(
                f"{where}: unknown field {parsed.field!r} (one of: {', '.join(FIELDS)})"
            )
        _check_summary(parsed.summary, where)
        if not parsed.enabled:
            continue
        rules.append(
            Rule(
                parsed.name,
                parsed.severity,
                for_s=parsed.for_s,
                clear_for_s=parsed.clear_for_s,
                labels=dict(parsed.labels),
                summary=parsed.summary,
                field=parsed.field,
                op=parsed.op,
                threshold=parsed.threshold,
            )
        )
    return rules


def _check_summary(template: str, where: str) -> None:
    try:
        parts = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise ConfigError(f"{where}: summary is not a valid template: {exc}") from None
    if any(spec or conversion for _, spec, conversion in parts):
        raise ConfigError(f"{where}: summary placeholders take no format (write {{value}})")
    unknown = {name for name, _, _ in parts} - SUMMARY_KEYS
    if unknown:
        allowed = ", ".join("{" + key + "}" for key in sorted(SUMMARY_KEYS))
        used = ", ".join(repr(key) for key in sorted(unknown))
        raise ConfigError(f"{where}: summary uses {used}; allowed: {allowed}")


def _read_toml(path: Path) -> RulesFile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"rules file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"rules file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"rules file {path} cannot be read: {exc.strerror or exc}") from None
    return _validated(RulesFile, data, f"rules file {path}")


def _validated(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
