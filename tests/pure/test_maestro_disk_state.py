"""The maestro's verdict on its own data disk, and logging it once a minute."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from maestro.diskstate import (
    RESERVE_NAME,
    DiskMonitor,
    DiskReport,
    DiskSettings,
    Throttle,
    ensure_reserve,
    is_disk_full,
    judge,
    release_reserve,
)

MIB = 1024 * 1024


def test_no_space_errors_are_told_from_other_failures() -> None:
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full("store write failed: database or disk is full")
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full("store write failed: disk I/O error")


def test_the_disk_is_full_while_a_writer_fails_for_lack_of_space_or_space_is_low() -> None:
    roomy = judge(
        None, free_bytes=50 * MIB, total_bytes=100 * MIB, errors={}, min_free_bytes=MIB, now=1
    )
    assert not roomy.full
    assert roomy.since is None
    failing = judge(
        roomy,
        free_bytes=50 * MIB,
        total_bytes=100 * MIB,
        errors={"alerts": "database or disk is full", "registry": "database is locked"},
        min_free_bytes=MIB,
        now=2,
    )
    assert failing.full
    assert dict(failing.failing) == {"alerts": "database or disk is full"}
    low = judge(failing, free_bytes=0, total_bytes=100 * MIB, errors={}, min_free_bytes=MIB, now=9)
    assert low.full
    assert low.since == 2  # full since the first verdict, not since the last probe
    back = judge(
        low, free_bytes=60 * MIB, total_bytes=100 * MIB, errors={}, min_free_bytes=MIB, now=10
    )
    assert not back.full


def test_other_write_errors_alone_do_not_say_the_disk_is_full() -> None:
    report = judge(
        None, free_bytes=50 * MIB, total_bytes=None, errors={"alerts": "database is locked"},
        min_free_bytes=MIB, now=1,
    )  # fmt: skip
    assert not report.full


def test_a_throttle_lets_one_line_a_minute_through_and_counts_the_rest() -> None:
    throttle = Throttle(60.0)
    passed = [t for t in range(0, 181) if throttle.ready(float(t))]  # one try a second
    assert passed == [0, 60, 120, 180]
    assert throttle.suppressed == 59
    throttle.reset()
    assert throttle.ready(181.0)  # a new streak is news at once


def test_the_monitor_tells_listeners_on_changes_only_and_logs_a_full_disk_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    monitor = DiskMonitor(tmp_path, DiskSettings(min_free_bytes=0), clock=lambda: now[0])
    error: list[str | None] = [None]
    monitor.sources["alerts"] = lambda: error[0]
    heard: list[bool] = []
    monitor.listeners.append(lambda report, _at: heard.append(report.full))
    caplog.set_level("WARNING", logger="arete.maestro.disk")
    monitor.probe()
    error[0] = "store write failed: database or disk is full"
    for second in range(1, 151):  # 2.5 minutes full, probed each second
        now[0] = float(second)
        monitor.probe()
    error[0] = None
    now[0] = 151.0
    monitor.probe()
    monitor.probe()
    assert heard == [False, True, False]
    lines = [r.getMessage() for r in caplog.records]
    full_lines = [line for line in lines if line.startswith("maestro data disk is full")]
    assert len(full_lines) == 3  # at 1 s, 61 s, 121 s
    assert lines[-1] == "maestro data disk has room again"
    assert isinstance(monitor.report, DiskReport)


def test_the_reserve_is_made_only_with_room_to_spare_and_given_up_once(tmp_path: Path) -> None:
    assert not ensure_reserve(tmp_path, 1 << 50)  # more than the disk could hold 4 times
    assert not ensure_reserve(tmp_path, 0)  # no reserve wanted
    assert not ensure_reserve(tmp_path / "missing", 4096)
    assert not (tmp_path / RESERVE_NAME).exists()
    assert ensure_reserve(tmp_path, 4096)
    assert (tmp_path / RESERVE_NAME).stat().st_size == 4096
    assert ensure_reserve(tmp_path, 4096)  # already there
    assert release_reserve(tmp_path)
    assert not release_reserve(tmp_path)
