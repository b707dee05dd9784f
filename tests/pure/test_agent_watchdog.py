"""The last resort behind "SIGTERM -> exit within 5 s": the watchdog of edge_agent.main."""

from __future__ import annotations

import subprocess
import sys
import time

from edge_agent.main import EXIT_WITHIN_S


def test_a_process_stuck_after_its_stop_was_asked_ends_itself_with_the_exit_code() -> None:
    program = """
import threading
import edge_agent.main as main

main.EXIT_WITHIN_S = 0.5
main._arm_watchdog(lambda: 64)
threading.Event().wait()  # stuck for good, like a join on a thread that never returns
"""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 64
    assert time.monotonic() - started < 5
    assert "agent did not stop in time" in done.stdout + done.stderr


def test_the_watchdog_leaves_room_under_the_five_second_promise() -> None:
    assert EXIT_WITHIN_S < 5.0
