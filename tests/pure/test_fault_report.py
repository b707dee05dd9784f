"""bench/faults.py turns the fault tier's recorded rows into the RELIABILITY.md table."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _faults() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("faults")


def _line(**fields: object) -> str:
    row = {
        "scenario": "broker kill -9",
        "detection_s": 0.8,
        "lost": 0,
        "duplicates": 0,
        "pages_expected": 1,
        "pages_sent": 1,
        "notes": "",
        "test": "tests/faults/test_x.py::test_y",
    }
    row.update(fields)
    return json.dumps(row)


def test_a_scenario_that_lost_a_sample_or_paged_wrongly_is_marked_broke() -> None:
    faults = _faults()
    rows = faults.parse_rows(
        "\n".join(
            [
                _line(),
                _line(scenario="lossy", lost=3),
                _line(scenario="storm", pages_sent=5),
                "not json",
                json.dumps({"no": "scenario"}),
            ]
        )
    )
    assert [row.scenario for row in rows] == ["broker kill -9", "lossy", "storm"]
    assert [row.verdict for row in rows] == ["held", "**broke**", "**broke**"]


def test_the_table_has_one_line_per_row_and_escapes_pipes() -> None:
    faults = _faults()
    rows = faults.parse_rows(_line(scenario="a | b", detection_s=None, notes="why"))
    table = faults.render(rows, outcome="1 passed", when="2026-12-06", commit="abc")
    body = [line for line in table.splitlines() if line.startswith("| a")]
    assert body == ["| a \\| b |  | 0 | 0 | 1 | 1 | held |"]
    assert "- a \\| b: why" in table
    assert "pytest: 1 passed" in table
