"""Settings of the command service (the ``[commands]`` section of the maestro's settings)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arete.commands import MAX_COMMAND_TTL_S


class CommandSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=MAX_COMMAND_TTL_S,
        description="Lifetime of a command whose name has no default of its own (seconds).",
    )
    max_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        le=MAX_COMMAND_TTL_S,
        description="Longest lifetime a caller may ask for; agents refuse longer ones.",
    )
    reply_grace_s: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="How long after its deadline a command waits for a late reply.",
    )
    fanout_concurrency: int = Field(
        default=200, ge=1, le=100_000, description="Commands of one fan-out in flight at once."
    )
    max_fanout: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most agents one fan-out may target."
    )
    keep_days: float = Field(
        default=30.0, gt=0, description="Finished commands older than this are purged (days)."
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError(
                f"default_timeout_s ({self.default_timeout_s}) exceeds "
                f"max_timeout_s ({self.max_timeout_s})"
            )
        return self
