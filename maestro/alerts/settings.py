"""Alert settings: evaluation timing, notification pacing and built-in rule overrides.

Nested in the maestro's settings as ``alerts`` (``ARETE_MAESTRO_ALERTS__GROUP_WAIT_S``,
or ``[alerts]`` / ``[alerts.builtin.cpu_high]`` in its TOML file). Custom rules live in
their own TOML file (``rules_file``), see ``docs/alerts.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from arete.payloads import AlertSeverity

NonNeg = Annotated[float, Field(ge=0, le=30 * 86400)]


class RuleOverride(BaseModel):
    """Changes to one built-in rule; unset fields keep the built-in value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    severity: AlertSeverity | None = None
    for_s: NonNeg | None = None
    clear_for_s: NonNeg | None = None
    threshold: float | None = None  # metric rules only
    labels: dict[str, str] | None = None  # only agents whose labels include these
    clean_stops: bool | None = None  # agent_offline only: page on clean stops too


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    rules_file: Path | None = Field(None, description="TOML file with custom [[rules]].")
    eval_every_s: float = Field(1.0, gt=0, le=60, description="Metric rules run this often.")
    group_wait_s: float = Field(
        2.0, ge=0, le=600, description="Alerts of one agent within this window share a message."
    )
    repeat_s: float = Field(
        4 * 3600.0, ge=0, le=30 * 86400,
        description="Remind about unacknowledged firing alerts this often (0: never).",
    )  # fmt: skip
    reopen_s: float = Field(
        600.0, ge=0, le=86400,
        description="An alert back within this long after resolving is the same incident "
        "(same id, flaps counted).",
    )  # fmt: skip
    stale_after_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A sample received longer ago than this is no data for metric rules.",
    )
    flap_hold_s: float = Field(
        60.0, ge=0, le=86400,
        description="A flapping incident (back after its resolved message) is announced "
        "again no sooner than this after that message; every outage is still told.",
    )  # fmt: skip
    keep_resolved_days: float = Field(90.0, gt=0, le=3660)
    builtin: dict[str, RuleOverride] = Field(
        default_factory=dict, description="Overrides of built-in rules by name."
    )
