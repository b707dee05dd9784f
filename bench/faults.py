"""Run the fault-injection tier and tabulate what each fault cost.

    python bench/faults.py                 # run tests/faults, print the table
    python bench/faults.py --write         # ... and put it in RELIABILITY.md (section ``faults``)
    python bench/faults.py -k broker       # extra arguments go to pytest

Every scenario in ``tests/faults/`` records one or more rows through the ``reliability``
fixture (scenario, detection time, samples lost, duplicates, pages expected and sent);
the test itself asserts the figures, so a row is only written by a scenario that ran to
its end. This script collects the rows from the same run and reports any scenario whose
test failed, so the table never shows a figure that was not proven.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sections import git_commit, replace_section

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "RELIABILITY.md"
ROWS_ENV = "ARETE_RELIABILITY_OUT"

INTRO = """\
# Reliability

Each section below is written by a script in `bench/` (run it with `--write` to refresh
its section; the rest of this file is left alone). Every figure comes from real
processes — Debian's Mosquitto, real agents and maestros, SQLite files, real tmpfs
mounts, libfaketime clocks and network namespaces with iptables link cuts — on one
shared 2-core machine; timings move from run to run, counts must not.
"""


@dataclass(frozen=True)
class Row:
    scenario: str
    detection_s: float | None
    lost: int
    duplicates: int
    pages_expected: int
    pages_sent: int
    notes: str
    test: str

    @property
    def verdict(self) -> str:
        ok = self.lost == 0 and self.duplicates == 0 and self.pages_expected == self.pages_sent
        return "held" if ok else "**broke**"


def parse_rows(text: str) -> list[Row]:
    """Rows from the JSON lines the ``reliability`` fixture wrote; bad lines are skipped."""
    rows: list[Row] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            detection = data.get("detection_s")
            rows.append(
                Row(
                    scenario=str(data["scenario"]),
                    detection_s=None if detection is None else float(detection),
                    lost=int(data.get("lost", 0)),
                    duplicates=int(data.get("duplicates", 0)),
                    pages_expected=int(data.get("pages_expected", 0)),
                    pages_sent=int(data.get("pages_sent", 0)),
                    notes=str(data.get("notes", "")),
                    test=str(data.get("test", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: Sequence[Row], *, outcome: str, when: str, commit: str) -> str:
    lines = [
        "## Fault injection (`bench/faults.py`)",
        "",
        f"`python bench/faults.py --write` on {when}, commit `{commit}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. pytest: {outcome}.",
        "",
        "Detection: seconds from the fault to the moment the system showed it (status, "
        "alert or page) — blank where there is nothing to detect. Lost and duplicates "
        "count samples (or commands) compared with what the agents produced. Pages: "
        "notifications per channel expected vs actually received by the local "
        "Telegram/Discord servers.",
        "",
        "| scenario | detection | lost | duplicates | pages expected | pages sent | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.test, r.scenario)):
        detection = "" if row.detection_s is None else f"{row.detection_s:.2f} s"
        lines.append(
            f"| {_cell(row.scenario)} | {detection} | {row.lost} | {row.duplicates} "
            f"| {row.pages_expected} | {row.pages_sent} | {row.verdict} |"
        )
    notes = [row for row in rows if row.notes]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {_cell(row.scenario)}: {_cell(row.notes)}" for row in notes]
    tests = sorted({row.test.split("::")[0] for row in rows if row.test})
    if tests:
        lines += ["", "Scenarios live in " + ", ".join(f"`{t}`" for t in tests) + "."]
    return "\n".join(lines) + "\n"


def run_tier(pytest_args: Sequence[str], rows_file: Path) -> tuple[int, str]:
    env = {**os.environ, ROWS_ENV: str(rows_file)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
    done = subprocess.run(
        [*argv, *pytest_args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    sys.stdout.write(done.stdout[-4000:])
    sys.stderr.write(done.stderr[-2000:])
    summary = next(
        (line.strip("= ") for line in reversed(done.stdout.splitlines()) if " in " in line),
        f"exit {done.returncode}",
    )
    return done.returncode, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="update RELIABILITY.md (faults)")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="arete-faults-") as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        rows_file.touch()
        status, outcome = run_tier(pytest_args, rows_file)
        rows = parse_rows(rows_file.read_text())
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    table = render(rows, outcome=outcome, when=when, commit=git_commit())
    print(table)
    if args.write:
        if not rows:
            print("no scenario recorded a row: RELIABILITY.md left alone", file=sys.stderr)
            return 1
        if not RELIABILITY.exists():
            RELIABILITY.write_text(INTRO)
        replace_section("faults", table, path=RELIABILITY)
        print(f"wrote {RELIABILITY.relative_to(ROOT)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
