"""What the edge agent costs a machine, next to Debian's node_exporter in the same run.

Starts a real broker, adds an agent ``bench`` and runs it at 1 Hz; beside it runs
``prometheus-node-exporter``, which this script scrapes once a second (the scraping costs
this script, not node_exporter). After a warm-up, it measures each process tree's CPU
time (user + system, children included) over the window as % of one core, and its
memory (RSS max and final; USS and PSS at the end).

Usage::

    python bench/agent_overhead.py [--seconds 70] [--warmup 10] [--write]
    python bench/agent_overhead.py --baseline-only --seconds 20   # node_exporter only

``--write`` puts the table in BENCHMARKS.md (section ``agent_overhead``). Goal (issue 3):
at most 0.25 % of a core and 30 MiB RSS, and less CPU than node_exporter.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sections import replace_section

REPO = Path(__file__).resolve().parents[1]
ARETE = [sys.executable, "-m", "arete_cli"]
NODE_EXPORTER = "prometheus-node-exporter"
MIB = 1024 * 1024
GOAL_CPU_PCT = 0.25
GOAL_RSS_MIB = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass
class Watched:
    """A process tree we started, and what it cost."""

    name: str
    popen: subprocess.Popen[bytes]
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_max: int = 0
    rss_final: int = 0
    uss: int | None = None
    pss: int | None = None
    pids_seen: set[int] = field(default_factory=set)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.popen.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.pids_seen.update(p.pid for p in procs)
        return procs

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def record_memory(self) -> None:
        rss = self.rss()
        self.rss_max = max(self.rss_max, rss)
        self.rss_final = rss

    def record_full_memory(self) -> None:
        """USS and PSS read /proc/PID/smaps: done once, at the end."""
        uss = pss = 0
        try:
            for proc in self.tree():
                info = proc.memory_full_info()
                uss += info.uss
                pss += getattr(info, "pss", 0)
        except psutil.Error:
            return
        self.uss, self.pss = uss, pss or None

    def cpu_pct(self, window_s: float) -> float:
        return (self.cpu_end - self.cpu_start) / window_s * 100


class Run:
    """Every process this script starts; :meth:`stop_all` stops them by PID, newest first."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.watched: list[Watched] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Watched:
        log = (self.workdir / f"{name}.log").open("ab")
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
            cwd=REPO,
            start_new_session=True,  # Ctrl-C on the bench reaches only the bench
        )
        log.close()
        watched = Watched(name, popen)
        self.watched.append(watched)
        watched.tree()
        return watched

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for watched in reversed(self.watched):
            watched.tree()  # remember the children too: a wrapper may not forward SIGTERM
            stop_pid(watched.popen)
            for pid in sorted(watched.pids_seen - {watched.popen.pid}):
                with contextlib.suppress(psutil.Error):
                    child = psutil.Process(pid)
                    child.terminate()
                    try:
                        child.wait(5)
                    except psutil.TimeoutExpired:
                        child.kill()


def stop_pid(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)


def scrape(port: int) -> int:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return len(response.read())


def add_agent(run: Run, data_dir: Path) -> Path:
    result = subprocess.run(
        [*ARETE, "agents", "add", "bench", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=run.env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"arete agents add failed: {result.stderr or result.stdout}")
    expected = data_dir / "agents" / "bench.toml"
    if expected.exists():
        return expected
    printed = re.findall(r"(/\S+\.toml)", result.stdout)
    if printed and Path(printed[-1]).exists():
        return Path(printed[-1])
    raise RuntimeError(f"arete agents add printed no config path: {result.stdout!r}")


def samples_taken(state_dir: Path) -> tuple[int, int] | None:
    """(samples numbered, samples left unsent) from the agent's state, when readable."""
    try:
        path = next(state_dir.rglob("*.db"))
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            seq = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
            unsent = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(seq[0]) if seq else 0, int(unsent[0])
    except (StopIteration, sqlite3.Error, TypeError, ValueError):
        return None


@dataclass
class Result:
    window_s: float
    scrapes: int
    scrape_bytes: int
    watched: list[Watched]
    agent_samples: tuple[int, int] | None = None


def start_processes(run: Run, args: argparse.Namespace) -> int:
    """Broker, agent (unless ``--baseline-only``) and node_exporter; returns its port."""
    if not args.baseline_only:
        data_dir, port = run.workdir / "data", free_port()
        broker = run.start(
            "broker", [*ARETE, "broker", "run", "--data-dir", str(data_dir), "--port", str(port)]
        )
        wait_port(port, broker.popen)
        config = add_agent(run, data_dir)
        run.start(
            "agent",
            [*ARETE, "agent", "run", "--config", str(config)],
            env={
                "ARETE_AGENT_STATE_DIR": str(run.workdir / "agent-state"),
                "ARETE_AGENT_INTERVAL_S": "1",
            },
        )
    exporter_port = free_port()
    exporter = run.start(
        "node_exporter", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{exporter_port}"]
    )
    wait_port(exporter_port, exporter.popen)
    return exporter_port


def observe(run: Run, exporter_port: int, args: argparse.Namespace) -> Result:
    """Scrape node_exporter every second; measure every process over the window."""
    measured = run.watched
    started = time.monotonic()
    window_start = started + args.warmup
    end = started + args.seconds
    scrapes = scrape_bytes = 0
    in_window = False
    tick = started
    while True:
        tick += 1.0
        time.sleep(max(0.0, tick - time.monotonic()))
        now = time.monotonic()
        if not in_window and now >= window_start:
            in_window, window_start = True, now
            for w in measured:
                w.cpu_start = w.cpu_seconds()
        if now >= end:
            break
        for w in measured:
            if w.popen.poll() is not None:
                raise RuntimeError(f"{w.name} exited early:\n{run.log_tail(w.name)}")
        scrape_bytes += scrape(exporter_port)
        scrapes += 1
        if in_window:
            for w in measured:
                w.record_memory()
    for w in measured:
        w.cpu_end = w.cpu_seconds()
        w.record_full_memory()
    return Result(now - window_start, scrapes, scrape_bytes, measured)


def measure(args: argparse.Namespace, workdir: Path) -> Result:
    run = Run(workdir, {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        result = observe(run, start_processes(run, args), args)
    finally:
        run.stop_all()
    if not args.baseline_only:
        result.agent_samples = samples_taken(workdir / "agent-state")
    return result


def report(args: argparse.Namespace, result: Result) -> str:
    by_name = {w.name: w for w in result.watched}
    labels = {
        "agent": "arete agent (1 Hz)",
        "node_exporter": "prometheus-node-exporter (scraped 1/s)",
        "broker": "mosquitto broker (for reference)",
    }
    rows = []
    for name in ("agent", "node_exporter", "broker"):
        w = by_name.get(name)
        if w is None:
            continue
        uss = "-" if w.uss is None else f"{w.uss / MIB:.1f}"
        pss = "-" if w.pss is None else f"{w.pss / MIB:.1f}"
        rows.append(
            f"| {labels[name]} | {w.cpu_pct(result.window_s):.3f} | {w.rss_max / MIB:.1f}"
            f" | {w.rss_final / MIB:.1f} | {uss} | {pss} |"
        )
    agent, exporter = by_name.get("agent"), by_name.get("node_exporter")
    lines = [
        "## Agent overhead (`bench/agent_overhead.py`)",
        "",
        f"{result.window_s:.0f} s measured after a {args.warmup:g} s warm-up, "
        f"{time.strftime('%Y-%m-%d')}, {psutil.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {exporter_version()}. CPU is user + system time of "
        "each process tree over the window; node_exporter was scraped "
        f"{result.scrapes} times ({result.scrape_bytes / max(result.scrapes, 1) / 1024:.0f} KiB"
        " each) by the bench, whose own cost is not counted.",
        "",
        "| process | CPU % of one core | RSS max MiB | RSS final MiB | USS MiB | PSS MiB |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    if agent is not None and exporter is not None:
        agent_cpu = agent.cpu_pct(result.window_s)
        exporter_cpu = exporter.cpu_pct(result.window_s)
        cpu_ratio = agent_cpu / exporter_cpu if exporter_cpu > 0 else float("inf")
        rss_ratio = agent.rss_max / exporter.rss_max if exporter.rss_max else float("inf")
        lines += [
            f"| **ratio agent / node_exporter** | **{cpu_ratio:.2f}x** | **{rss_ratio:.2f}x**"
            " | | | |",
            "",
            f"Goal: CPU <= {GOAL_CPU_PCT} % of a core ({verdict(agent_cpu <= GOAL_CPU_PCT)}), "
            f"RSS <= {GOAL_RSS_MIB:g} MiB ({verdict(agent.rss_max / MIB <= GOAL_RSS_MIB)}), "
            f"less CPU than node_exporter ({verdict(agent_cpu < exporter_cpu)}).",
        ]
        if result.agent_samples is not None:
            taken, unsent = result.agent_samples
            lines += [
                "",
                f"The agent numbered {taken} samples during the whole run "
                f"({unsent} left unsent in its outbox).",
            ]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def exporter_version() -> str:
    try:
        out = subprocess.run(
            [NODE_EXPORTER, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "node_exporter (version unknown)"
    found = re.search(r"version (\S+)", out.stdout + out.stderr)
    return f"node_exporter {found.group(1)}" if found else "node_exporter"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=70, help="whole run, warm-up included")
    parser.add_argument("--warmup", type=float, default=10, help="seconds left out at the start")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument(
        "--baseline-only", action="store_true", help="run node_exporter alone (no broker/agent)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    if args.seconds <= args.warmup + 1:
        parser.error("--seconds must exceed --warmup by more than a second")
    if shutil.which(NODE_EXPORTER) is None:
        parser.error(f"{NODE_EXPORTER} is not installed (apt-get install {NODE_EXPORTER})")
    workdir = Path(tempfile.mkdtemp(prefix="arete-bench-"))
    try:
        result = measure(args, workdir)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        for log in sorted(workdir.glob("*.log")):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            print(f"--- {log} (last lines)\n{tail}", file=sys.stderr)
        return 1
    text = report(args, result)
    print(text)
    if args.write:
        if args.baseline_only:
            print("\n--write needs the agent: not written (baseline only)", file=sys.stderr)
        else:
            print(f"\nwritten to {replace_section('agent_overhead', text)}", file=sys.stderr)
    if args.keep:
        print(f"logs in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
