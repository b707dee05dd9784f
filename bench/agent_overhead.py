"""What the edge agent costs a machine, next to Debian's node_exporter in the same run.

Starts a real broker, adds an agent ``bench`` and runs it at 1 Hz; beside it runs
``prometheus-node-exporter``, which this script scrapes once a second (the scraping costs
this script, not node_exporter). After a warm-up, it measures each process tree over the
window: CPU as % of one core, and memory (RSS max and final; USS and PSS at the end).

CPU is the same measure for every process: the nanoseconds the scheduler accounted to
each of its threads (``/proc/<pid>/task/<tid>/schedstat``, first field), polled once a
second so a thread that ends inside the window still counts up to its last poll. The
clock-tick counters behind ``cpu_times()`` (10 ms steps) are too coarse for processes
that use a few milliseconds a second. The run fails when the agent published fewer than
95 % of the samples the window should hold, since a cheap agent that skipped samples
proves nothing.

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

from edge_agent.sampler_math import Partition, select_mounts

REPO = Path(__file__).resolve().parents[1]
ARETE = [sys.executable, "-m", "arete_cli"]
NODE_EXPORTER = "prometheus-node-exporter"
MIB = 1024 * 1024
GOAL_CPU_PCT = 0.25
GOAL_RSS_MIB = 30.0
AGENT_INTERVAL_S = 1.0
MIN_PUBLISHED = 0.95  # of the samples expected in the window, or the run fails


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


def thread_run_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each thread of ``pid`` has run, by thread id (``schedstat``)."""
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except OSError:  # the process ended
        return {}
    run_ns = {}
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/schedstat") as file:
                run_ns[int(tid)] = int(file.read().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return run_ns


@dataclass
class Watched:
    """A process tree we started, and what it cost."""

    name: str
    popen: subprocess.Popen[bytes]
    run_ns_start: dict[int, int] = field(default_factory=dict)  # by thread id
    run_ns_seen: dict[int, int] = field(default_factory=dict)  # latest poll of every thread
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

    def poll_cpu(self) -> None:
        for proc in self.tree():
            self.run_ns_seen.update(thread_run_ns(proc.pid))

    def start_cpu(self) -> None:
        self.poll_cpu()
        self.run_ns_start = dict(self.run_ns_seen)

    def cpu_seconds(self) -> float:
        """Run time of every thread since :meth:`start_cpu` (threads born later from 0)."""
        ns = sum(seen - self.run_ns_start.get(tid, 0) for tid, seen in self.run_ns_seen.items())
        return ns / 1e9

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
        return self.cpu_seconds() / window_s * 100


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


@dataclass(frozen=True)
class AgentCount:
    """The agent's sample counters, read from its state database while it runs."""

    numbered: int  # samples taken since the agent was installed
    unsent: int  # in the outbox (not yet acknowledged by the broker)
    dropped: int  # dropped from a full outbox: never published

    @property
    def published(self) -> int:
        return self.numbered - self.unsent - self.dropped


def agent_count(state_dir: Path) -> AgentCount | None:
    """The agent's counters, when its state database is readable."""
    try:
        path = next(state_dir.rglob("*.db"))
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            unsent = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return AgentCount(int(meta.get("seq", 0)), int(unsent[0]), int(meta.get("dropped", 0)))
    except (StopIteration, sqlite3.Error, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class MachineShape:
    """What node_exporter's and the agent's cost grow with."""

    cpus: int
    processes: int
    nics: list[str]
    hardware_nics: list[str]  # with a /sys/class/net/<name>/device link
    mounts: int
    reported_mounts: int  # the ones the agent reports

    def describe(self) -> str:
        hardware = ", ".join(self.hardware_nics) or "none"
        return (
            f"{self.cpus} CPUs, {self.processes} processes, {len(self.nics)} network "
            f"interfaces ({len(self.hardware_nics)} hardware: {hardware}), {self.mounts} "
            f"mounts ({self.reported_mounts} reported by the agent)"
        )


def machine_shape() -> MachineShape:
    net = Path("/sys/class/net")
    nics = sorted(path.name for path in net.iterdir()) if net.is_dir() else []
    reported = select_mounts(
        Partition(p.device, p.mountpoint, p.fstype, p.opts)
        for p in psutil.disk_partitions(all=False)
    )
    return MachineShape(
        cpus=psutil.cpu_count() or 0,
        processes=len(psutil.pids()),
        nics=nics,
        hardware_nics=[name for name in nics if (net / name / "device").exists()],
        mounts=len(psutil.disk_partitions(all=True)),
        reported_mounts=len(reported),
    )


@dataclass
class Result:
    window_s: float
    scrapes: int
    scrape_bytes: int
    watched: list[Watched]
    shape: MachineShape
    agent_start: AgentCount | None = None
    agent_end: AgentCount | None = None

    @property
    def expected_samples(self) -> int:
        return int(self.window_s / AGENT_INTERVAL_S)

    @property
    def published_in_window(self) -> int | None:
        if self.agent_start is None or self.agent_end is None:
            return None
        return self.agent_end.published - self.agent_start.published


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
                "ARETE_AGENT_INTERVAL_S": str(AGENT_INTERVAL_S),
            },
        )
    exporter_port = free_port()
    exporter = run.start(
        "node_exporter", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{exporter_port}"]
    )
    wait_port(exporter_port, exporter.popen)
    return exporter_port


def observe(run: Run, exporter_port: int, args: argparse.Namespace) -> Result:
    """Scrape node_exporter every second; measure every process over the window.

    node_exporter is scraped during the warm-up too, but only the window's scrapes, CPU
    and published samples are counted.
    """
    measured = run.watched
    state_dir = None if args.baseline_only else run.workdir / "agent-state"
    started = time.monotonic()
    window_start = started + args.warmup
    end = started + args.seconds
    scrapes = scrape_bytes = 0
    in_window = False
    agent_start = None
    shape = machine_shape()
    tick = started
    while True:
        tick += 1.0
        time.sleep(max(0.0, tick - time.monotonic()))
        now = time.monotonic()
        if not in_window and now >= window_start:
            in_window, window_start = True, now
            for w in measured:
                w.start_cpu()
            agent_start = None if state_dir is None else agent_count(state_dir)
            shape = machine_shape()  # with every process of the run started
        if now >= end:
            break
        for w in measured:
            if w.popen.poll() is not None:
                raise RuntimeError(f"{w.name} exited early:\n{run.log_tail(w.name)}")
        size = scrape(exporter_port)
        if in_window:
            scrape_bytes += size
            scrapes += 1
            for w in measured:
                w.poll_cpu()
                w.record_memory()
    for w in measured:
        w.poll_cpu()
    agent_end = None if state_dir is None else agent_count(state_dir)
    for w in measured:
        w.record_full_memory()
    return Result(
        now - window_start, scrapes, scrape_bytes, measured, shape, agent_start, agent_end
    )


def measure(args: argparse.Namespace, workdir: Path) -> Result:
    run = Run(workdir, {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        return observe(run, start_processes(run, args), args)
    finally:
        run.stop_all()


def check_published(result: Result) -> str | None:
    """Why the run does not count (the agent skipped samples), or ``None`` when it does."""
    published = result.published_in_window
    if published is None:
        return "could not read the agent's sample counters from its state database"
    if published < MIN_PUBLISHED * result.expected_samples:
        return (
            f"the agent published {published} samples in the {result.window_s:.0f} s window,"
            f" fewer than {MIN_PUBLISHED:.0%} of the {result.expected_samples} expected"
        )
    return None


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
        f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
        f"{exporter_version()}. Machine: {result.shape.describe()}. CPU is the run time the "
        "scheduler accounted to every thread of each process tree over the window "
        "(`/proc/<pid>/task/*/schedstat`, polled each second); node_exporter was scraped "
        f"{result.scrapes} times in the window "
        f"({result.scrape_bytes / max(result.scrapes, 1) / 1024:.0f} KiB each) by the bench,"
        " whose own cost is not counted.",
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
        published, end = result.published_in_window, result.agent_end
        if published is not None and end is not None:
            lines += [
                "",
                f"The agent published {published} samples in the window "
                f"({result.expected_samples} expected at {1 / AGENT_INTERVAL_S:g} Hz; "
                f"{end.unsent} unsent in its outbox at the end).",
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
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists():
        parser.error("needs /proc/<pid>/task/<tid>/schedstat (Linux with CONFIG_SCHED_INFO)")
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
    failure = None if args.baseline_only else check_published(result)
    if failure is not None:
        print(f"\nbench failed: {failure}; nothing written; logs in {workdir}", file=sys.stderr)
        return 1
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
