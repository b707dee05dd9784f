"""The agent's thread pools: a call that never returns can neither fill them for others
nor hold up the process's exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from edge_agent.threads import DaemonPool


def test_jobs_run_and_report_results_and_errors() -> None:
    pool = DaemonPool(2, "test")
    assert pool.submit(lambda: 6 * 7).result(5) == 42
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    pool.shutdown()


def test_a_blocked_job_does_not_stop_another_pool() -> None:
    never = threading.Event()
    handlers, sampling = DaemonPool(1, "handlers"), DaemonPool(1, "sampler")
    handlers.submit(never.wait)  # blocked for good, like a capture of a hung X server
    assert sampling.submit(lambda: "sample").result(2) == "sample"
    deadline = time.monotonic() + 5  # the handler thread picks the job up on its own time
    while handlers.busy != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handlers.busy == 1
    started = time.monotonic()
    handlers.shutdown(wait=True)  # returns at once although its thread is blocked
    assert time.monotonic() - started < 0.5
    never.set()


def test_asyncio_accepts_it_as_default_executor() -> None:
    async def main() -> str:
        asyncio.get_running_loop().set_default_executor(DaemonPool(2, "default"))
        return await asyncio.to_thread(lambda: "done")

    assert asyncio.run(main()) == "done"


def test_a_process_exits_although_a_call_on_its_pools_never_returns() -> None:
    program = """
import asyncio, threading
from edge_agent.threads import DaemonPool

async def main():
    loop = asyncio.get_running_loop()
    loop.set_default_executor(DaemonPool(2, "default"))
    loop.run_in_executor(None, threading.Event().wait)  # never returns
    await asyncio.sleep(0.1)

asyncio.run(main())
print("exited")
"""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exited"
    assert time.monotonic() - started < 5
