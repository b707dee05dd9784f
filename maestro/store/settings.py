"""Settings of the embedded store: retention windows and how samples are batched.

The maestro's own ``Settings`` nests one of these; every value is checked here, so a
typo in a config file is a clear error at startup rather than a surprise at 3 a.m.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StoreSettings(BaseModel):
    """How long samples are kept and how the writer batches them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw_retention_h: Annotated[
        float, Field(gt=0, le=24 * 366, description="Hours raw 1 s samples are kept.")
    ] = 48.0
    rollup_retention_d: Annotated[
        float, Field(gt=0, le=3660, description="Days the 1-minute rollups are kept.")
    ] = 30.0
    batch_max_rows: Annotated[
        int, Field(ge=1, le=100_000, description="Rows written in one transaction at most.")
    ] = 5000
    batch_max_delay_s: Annotated[
        float,
        Field(ge=0, le=10, description="Longest a submitted sample waits for its batch."),
    ] = 0.05
    detail: Annotated[
        bool,
        Field(
            description="Keep the per-core, per-mount, per-sensor and per-GPU readings with"
            " history (about doubles the writer's CPU time per sample)."
        ),
    ] = True
    retention_every_s: Annotated[
        float, Field(ge=1, le=86_400, description="Seconds between two retention passes.")
    ] = 300.0

    @property
    def raw_retention_s(self) -> float:
        return self.raw_retention_h * 3600.0

    @property
    def rollup_retention_s(self) -> float:
        return self.rollup_retention_d * 86_400.0
