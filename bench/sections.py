"""BENCHMARKS.md is made of sections that each benchmark script rewrites on ``--write``.

A section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; everything else
in the file is left as people wrote it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def git_commit() -> str:
    """The checkout's short commit, for a section's header ("unknown" outside git)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


INTRO = """\
# Benchmarks

Each section below is written by a script in `bench/` (run it with `--write` to refresh
its section; the rest of this file is left alone).

How to read them: every comparison is a **ratio against a baseline measured in the same
run, on the same machine, at the same time** (stdlib `json` for the codec, Debian's
`prometheus-node-exporter` for the agent's cost). The absolute numbers come from a shared
2-core virtual machine and move by tens of percent from one run to the next; the ratios
are what to compare between runs and machines.
"""


def replace_section(name: str, body: str, path: Path = BENCHMARKS) -> Path:
    """Put ``body`` between the ``name`` markers of ``path``, appending them if absent."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else INTRO
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return path
