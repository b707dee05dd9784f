"""Control-plane uptime through Caddy on a deployed fleet, and RELIABILITY.md's section.

    python bench/uptime.py            # deploy (tests/deploy), run the scenario, print
    python bench/uptime.py --write    # ... and put it in RELIABILITY.md (section ``uptime``)
    python bench/uptime.py --from FIGURES.json --write   # figures of a deploy run that passed

A deploy run leaves its figures in a file when ``ARETE_UPTIME_OUT`` names one (the test
writes it after its assertions held, so the file only exists for a scenario that passed).

The scenario is the deploy tier's test
``tests/deploy/test_fleet.py::test_control_plane_stays_up_through_a_kill_and_a_rolling_restart``
(tests/deploy/uptime.py): real systemd hosts in podman, ``ansible/site.yml`` applied, a
probe of API reads (5 a second) and a websocket through Caddy while one replica is killed
with SIGKILL and then every replica is restarted one at a time. The test asserts the
figures (>= 99.9 % of the reads succeed, the websocket comes back by itself, systemd
restarts the killed replica); the section is written only when it passed.
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
from pathlib import Path
from typing import Any

from sections import git_commit, replace_section

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "RELIABILITY.md"
OUT_ENV = "ARETE_UPTIME_OUT"
TEST = (
    "tests/deploy/test_fleet.py::test_control_plane_stays_up_through_a_kill_and_a_rolling_restart"
)


def render(figures: dict[str, Any], *, when: str, commit: str) -> str:
    ratio = float(figures["success_ratio"])
    failures = figures.get("failures") or []
    lines = [
        "## Control-plane uptime (`bench/uptime.py`)",
        "",
        f"`python bench/uptime.py` on {when}, commit `{commit}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "A fleet deployed by `ansible/site.yml` on real systemd hosts (podman): the broker, "
        "control-plane replicas `a` and `b` and Caddy on `central`, an agent on `agent1` "
        "and `agent2`. A probe reads `GET /agents` through Caddy (HTTPS, API token) "
        f"{figures.get('rate_hz', 5):g} times a second and keeps a dashboard websocket "
        "open (`/ws`, following agent1: a metrics frame a second), reconnecting by "
        "itself when it drops. Meanwhile replica `a` is killed with SIGKILL, then every "
        "replica is restarted one at a time (each once the previous one answers "
        "`/readyz`).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| probe duration | {figures['duration_s']} s |",
        f"| API reads: succeeded / sent | {figures['ok']} / {figures['requests']} "
        f"({ratio * 100:.2f} %, target >= 99.9 %) |",
        f"| SIGKILL -> systemd started replica a again (NRestarts "
        f"{figures['nrestarts_before']} -> {figures['nrestarts_after']}, new MainPID) "
        f"-> `/readyz` | {figures['kill_recovery_s']} s |",
        f"| rolling restart of every replica | {figures['rolling_s']} s |",
        f"| websocket: drops / connections | {figures['ws_drops']} / {figures['ws_connects']} "
        "(reconnected by itself each time) |",
        f"| websocket: frames received / longest gap | {figures['ws_frames']} / "
        f"{figures['ws_longest_gap_s']} s |",
    ]
    if failures:
        lines += ["", "Failed reads and websocket drops (time into the probe):", ""]
        lines += [f"- {str(item).replace('|', '/')}" for item in failures]
    lines += ["", f"The scenario and its assertions: `{TEST}`."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="update RELIABILITY.md (uptime)")
    parser.add_argument(
        "--from", dest="source", type=Path, help="figures written by a deploy run that passed"
    )
    args, pytest_args = parser.parse_known_args(argv)
    if args.source is not None:
        return _write(json.loads(args.source.read_text()), write=args.write)
    with tempfile.TemporaryDirectory(prefix="arete-uptime-") as tmp:
        out = Path(tmp) / "uptime.json"
        env = {**os.environ, OUT_ENV: str(out)}
        argv_ = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
        done = subprocess.run([*argv_, *pytest_args], cwd=ROOT, env=env, check=False)
        if not out.exists():
            print("the scenario recorded no figures (see pytest's output)", file=sys.stderr)
            return done.returncode or 1
        figures = json.loads(out.read_text())
    if done.returncode != 0:
        print("the test failed: RELIABILITY.md left alone", file=sys.stderr)
        return done.returncode
    return _write(figures, write=args.write)


def _write(figures: dict[str, Any], *, write: bool) -> int:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    section = render(figures, when=when, commit=git_commit())
    print(section)
    if write:
        replace_section("uptime", section, path=RELIABILITY)
        print(f"wrote {RELIABILITY.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
