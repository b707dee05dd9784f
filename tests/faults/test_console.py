"""``arete up`` under a fault: its local agent killed -9. The supervisor says so in the
prefixed stream, restarts the agent, and the maestro's store ends with every sample
the agent numbered, exactly once."""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from edge_agent.seq import SEQ_BLOCK
from tests.faults.conftest import Reliability
from tests.fixtures.procs import Proc, free_port, wait_for

SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"
PREFIXED = re.compile(r"^\d\d:\d\d:\d\d (broker |maestro|web    |agent  |up     ) \| \S")


def stored(db: Path) -> list[int]:
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return [row[0] for row in conn.execute(SEQS, ("this-pc",))]
    except sqlite3.OperationalError:  # the maestro has not made its tables yet
        return []


def missing(seqs: list[int]) -> int:
    """Numbers the store lacks, not counting the one jump a crash makes: a killed agent
    resumes after the block of numbers it had reserved (edge_agent/seq.py), never used."""
    numbers = sorted(set(seqs))
    if not numbers:
        return 1
    gaps = [b - a - 1 for a, b in itertools.pairwise([0, *numbers]) if b - a > 1]
    crash_jump = max(gaps, default=0)
    if crash_jump > SEQ_BLOCK + 50:  # more than a reserved block: not the crash's jump
        crash_jump = 0
    return sum(gaps) - crash_jump


def test_up_restarts_a_killed_agent_says_so_in_the_stream_and_loses_nothing(
    procs: Callable[..., Proc], tmp_path: Path, reliability: Reliability
) -> None:
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "arete_cli", "up", "--data-dir", str(data)]
    argv += ["--mqtt-port", str(free_port()), "--http-port", str(free_port()), "--ws-port", "0"]
    up = procs([*argv, "--agent-id", "this-pc"], "up", env={"ARETE_AGENT_INTERVAL_S": "0.5"})
    db = data / "maestro" / "main.db"
    wait_for(lambda: len(stored(db)) >= 6, 60, "the first samples stored")

    agent = next(
        child
        for child in psutil.Process(up.pid).children(recursive=True)
        if "agent" in child.cmdline() and "run" in child.cmdline()
    )
    before = max(stored(db))
    agent.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: "restarting it" in up.output(), 15, "up to notice the dead agent")
    detection_s = time.monotonic() - killed
    wait_for(lambda: max(stored(db)) >= before + 10, 40, "samples from the restarted agent")
    wait_for(lambda: missing(stored(db)) == 0, 30, "every numbered sample stored")
    seqs = stored(db)
    lost = missing(seqs)
    duplicates = len(seqs) - len(set(seqs))

    up.signal(signal.SIGINT)
    assert up.wait(30) == 0
    output = up.output()
    reliability.record(
        "arete up: local agent kill -9, restarted by up",
        detection_s=detection_s,
        lost=lost,
        duplicates=duplicates,
        notes=f"{len(set(seqs))} samples; restart announced in up's prefixed stream",
    )
    assert lost == 0
    assert duplicates == 0
    assert re.search(r"\| WARNING the local agent exited \(-9\); restarting it", output), output
    before_banner, _, rest = output.partition("\nAreté is running")
    _, _, after_banner = rest.partition(f"--data-dir {data}\n")
    for line in (before_banner + "\n" + after_banner).splitlines():
        if line.strip():
            assert PREFIXED.match(line), f"not prefixed: {line!r}"
    assert "Traceback" not in output
