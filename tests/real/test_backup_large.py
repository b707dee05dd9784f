"""A database larger than the memory a backup may use streams through ``arete backup``:
the archive is written and restored with a flat memory footprint, not one that grows
with the data."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

from arete_cli.backup.keys import write_key_file
from tests.fixtures.broker import run_cli
from tests.fixtures.procs import ARETE, REPO

DB_MB = 96
MARGIN_MB = 32  # a third of the database: it cannot be held in memory whole, let alone twice


def peak_rss_mb(*args: str, log: Path) -> tuple[float, str]:
    """Run ``arete ARGS``; its peak resident memory (MiB, VmHWM) and its output.

    Read from /proc while it runs: the high-water mark of its own memory (rusage's
    maxrss would start at this test process's size, inherited through fork and exec).
    """
    with log.open("wb") as out:
        proc = subprocess.Popen([*ARETE, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        peak_kb = 0
        while proc.poll() is None:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                if "VmHWM:" in status:  # not once it has exited (a zombie has no memory)
                    peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            time.sleep(0.01)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert peak_kb > 0
    return peak_kb / 1024, output


def test_a_database_larger_than_the_memory_margin_streams_through(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("keys", "create", "--data-dir", str(data_dir))
    (data_dir / "maestro").mkdir(mode=0o700)
    conn = sqlite3.connect(data_dir / "maestro" / "main.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, blob BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO samples (blob) VALUES (randomblob(?))", [(1024 * 1024,)] * DB_MB)
    conn.execute("COMMIT")
    conn.close()
    key = tmp_path / "key"
    write_key_file(key)

    baseline, _ = peak_rss_mb("backup", "list", "--out", str(tmp_path), log=tmp_path / "list.log")
    created, output = peak_rss_mb(
        "backup", "create", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"),
        "--key-file", str(key), log=tmp_path / "create.log",
    )  # fmt: skip
    archive = Path(output.split()[1])
    assert archive.stat().st_size > DB_MB * 1024 * 1024
    restored, _ = peak_rss_mb(
        "backup", "restore", str(archive), "--data-dir", str(tmp_path / "restored"),
        "--key-file", str(key), log=tmp_path / "restore.log",
    )  # fmt: skip
    assert created - baseline < MARGIN_MB, (baseline, created)
    assert restored - baseline < MARGIN_MB, (baseline, restored)
    copy = sqlite3.connect(tmp_path / "restored" / "maestro" / "main.db")
    try:
        assert copy.execute("SELECT count(*), sum(length(blob)) FROM samples").fetchone() == (
            DB_MB,
            DB_MB * 1024 * 1024,
        )
    finally:
        copy.close()
