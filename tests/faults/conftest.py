"""Fault-injection tier: real processes under real faults.

Every scenario records one row with the ``reliability`` fixture: what was done, how fast
it was detected, samples lost and duplicated, and pages expected vs sent.
``bench/faults.py --write`` runs this tier and turns the rows into RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ROWS_ENV = "ARETE_RELIABILITY_OUT"


@dataclass
class FaultRow:
    scenario: str
    detection_s: float | None = None
    lost: int = 0
    duplicates: int = 0
    pages_expected: int = 0
    pages_sent: int = 0
    notes: str = ""
    test: str = field(default="")


class Reliability:
    """Collects the rows of one test; written out only if the test body finished."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.rows: list[FaultRow] = []

    def record(
        self,
        scenario: str,
        *,
        detection_s: float | None = None,
        lost: int = 0,
        duplicates: int = 0,
        pages_expected: int = 0,
        pages_sent: int = 0,
        notes: str = "",
    ) -> FaultRow:
        row = FaultRow(
            scenario=scenario,
            detection_s=None if detection_s is None else round(detection_s, 2),
            lost=lost,
            duplicates=duplicates,
            pages_expected=pages_expected,
            pages_sent=pages_sent,
            notes=notes,
            test=self.test,
        )
        self.rows.append(row)
        return row


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Reliability]:
    """Record a scenario's figures; they go to $ARETE_RELIABILITY_OUT (JSON lines) if set."""
    collected = Reliability(request.node.nodeid)
    yield collected
    out = os.environ.get(ROWS_ENV)
    if out and collected.rows:
        with Path(out).open("a", encoding="utf-8") as sink:
            for row in collected.rows:
                sink.write(json.dumps(asdict(row)) + "\n")
