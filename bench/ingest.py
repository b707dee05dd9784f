"""Ingest ceiling: how many agents at 1 Hz the maestro stores with zero loss, next to a
bare paho subscriber measured in the same run.

Every step of the ladder gets a fresh broker (temporary data dir, free port, unique
root), one consumer, and the load generator (``bench/loadgen.py``, its own processes)
offering N agents x 1 Hz of QoS 1 ``metrics`` for ``--window`` seconds:

1. baseline, the bare subscriber (``ingest.py bare-subscriber``, its own process): paho,
   MQTT 5, QoS 1 with paho's automatic acks, ``json.loads`` of every payload, a counter.
   Its ceiling is the largest N it receives completely and on time.
2. the maestro, ``arete maestro run`` with its Prometheus endpoint: it passes a step when
   every sent seq of every agent is in its SQLite store (per-agent counts compared with
   the generator's report, after the store drained) and it was not behind: the last
   sample stored within ``--keep-up`` seconds of the generator's last publish.

A step where the generator itself fell behind schedule is reported invalid (the load was
not offered) and ends that ladder. CPU of the consumer and the broker is read from
``/proc/<pid>/task/*/schedstat`` over the window; the generator reports its own.

Usage::

    python bench/ingest.py --window 15 --ladder 2000,5000,10000     # a quick look
    python bench/ingest.py --write                                  # 60 s steps
    python bench/ingest.py --profile /tmp/prof --ladder 10000 --skip-bare

``--write`` puts the results in BENCHMARKS.md (section ``maestro-ingest``). Goal (issue
4): at least 20,000 agents at 1 Hz, and at least 0.4x the bare subscriber's ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from loadgen import ARETE, BrokerRun, Procs, Report, Started, free_port, loadgen_argv, start_broker
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sections import replace_section

from arete.topics import Kind, Topics

GOAL_AGENTS = 20_000
GOAL_RATIO = 0.4
# Steps about 20-25 % apart: with 2,000 -> 5,000 -> 10,000 a maestro that keeps up with
# 4,900 agents read as a 2,000 ceiling (0.20x), which says more about the ladder than the
# maestro. The ratio is only as fine as the steps.
MAESTRO_LADDER = (2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_500, 15_000, 20_000)
BARE_LADDER = (5_000, 6_000, 8_000, 10_000, 12_500, 15_000, 20_000, 25_000, 30_000, 40_000)
READY_TIMEOUT_S = 30.0


# -- the bare subscriber (its own process) ------------------------------------------------
def bare_subscriber(argv: Sequence[str]) -> int:
    """Receive ``<root>/metrics/+`` at QoS 1, ``json.loads`` each, count; state to a file."""
    parser = argparse.ArgumentParser(prog="ingest.py bare-subscriber")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args(argv)
    state: dict[str, Any] = {"subscribed": False, "received": 0, "bad": 0, "latency_max": 0.0}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="maestro:bare-subscriber",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set("maestro", args.password_file.read_text().strip())
    topic = Topics(args.root).all_of(Kind.METRICS)

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(*_: Any) -> None:
        state["subscribed"] = True

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(message.payload)
            latency = time.time() - doc["samples"][0]["ts"]
        except (ValueError, KeyError, IndexError, TypeError):
            state["bad"] += 1
            return
        state["received"] += 1
        state["latency_max"] = max(state["latency_max"], latency)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_start()
    tmp = args.state_file.with_suffix(".tmp")
    while True:
        tmp.write_text(json.dumps(state))
        tmp.replace(args.state_file)
        if stop.wait(0.25):
            break
    client.disconnect()
    client.loop_stop()
    tmp.write_text(json.dumps(state))
    tmp.replace(args.state_file)
    return 0


# -- one step --------------------------------------------------------------------------------
@dataclass
class Step:
    consumer: str  # "bare" | "maestro"
    agents: int
    window_s: float
    sent: int = 0
    got: int = 0  # received (bare) or stored (maestro)
    lost: int = 0
    drain_s: float | None = None  # after the generator's last publish; None: never drained
    lag_max_s: float = 0.0  # maestro: store lag gauge; bare: sample age at receipt
    pending_max: int = 0  # maestro: rows waiting for the store
    cpu: dict[str, float | None] = field(default_factory=dict)
    generator_valid: bool = False
    generator_rate: float = 0.0
    generator_behind_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    passed: bool = False


# The only series the bench reads. Asking for them by name (``name[]``) keeps each poll
# cheap: the maestro's full /metrics also carries every agent's series (maestro/exporter.py),
# and rendering those several times a second would be the bench loading the maestro.
SCRAPED = ("arete_maestro_mqtt_connected", "arete_maestro_store_pending_rows")


def scrape(port: int) -> dict[str, float]:
    query = "&".join(f"name[]={name}" for name in SCRAPED)
    url = f"http://127.0.0.1:{port}/metrics?{query}"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


class Consumer:
    """What a step needs of the bare subscriber or the maestro."""

    name = ""
    started: Started

    def ready(self) -> bool:
        raise NotImplementedError

    def poll(self, step: Step) -> int:
        """Count received/stored so far; update the step's lag gauges."""
        raise NotImplementedError

    def finish(self, report: Report, step: Step) -> None:
        """After the consumer stopped: final counts and loss."""


class Bare(Consumer):
    name = "bare"

    def __init__(self, procs: Procs, broker: BrokerRun, workdir: Path) -> None:
        self.state_file = workdir / "bare-state.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "bare-subscriber"]
        argv += ["--port", str(broker.port), "--password-file", str(broker.password_file)]
        argv += ["--root", broker.root, "--state-file", str(self.state_file)]
        self.started = procs.start("bare", argv)

    def state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state

    def ready(self) -> bool:
        return bool(self.state().get("subscribed"))

    def poll(self, step: Step) -> int:
        state = self.state()
        step.lag_max_s = max(step.lag_max_s, float(state.get("latency_max", 0.0)))
        return int(state.get("received", 0))

    def finish(self, report: Report, step: Step) -> None:
        state = self.state()
        step.got = int(state.get("received", 0))
        step.lost = max(0, report.sent_total - step.got)
        if state.get("bad"):
            step.problems.append(f"{state['bad']} payloads did not parse")


class MaestroProc(Consumer):
    name = "maestro"

    def __init__(self, procs: Procs, broker: BrokerRun) -> None:
        self.port = free_port()
        self.db = broker.data_dir / "maestro" / "main.db"
        argv = [*ARETE, "maestro", "run", "--data-dir", str(broker.data_dir)]
        argv += ["--metrics-port", str(self.port)]
        self.started = procs.start("maestro", argv, env={"ARETE_MAESTRO_LOG_FORMAT": "json"})
        self.stored = 0

    def ready(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            if scrape(self.port).get("arete_maestro_mqtt_connected") == 1.0:
                return True
        # The log says so too (and does when the Prometheus endpoint is broken).
        return "connected to mqtt://" in self.started.tail(50)

    def poll(self, step: Step) -> int:
        """Rows stored so far, and the age of the newest: read from the store itself.

        ``max(rowid)`` is the number of rows ever inserted (the bench deletes none, and
        a duplicate takes no rowid), found in O(log n); the newest row's ``ts`` is its
        send time, so ``now - ts`` is how far behind the store is, end to end.
        """
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
                row = db.execute(
                    "SELECT rowid, ts FROM samples WHERE rowid = (SELECT max(rowid) FROM samples)"
                ).fetchone()
            if row is not None:
                self.stored = int(row[0])
                step.lag_max_s = max(step.lag_max_s, time.time() - float(row[1]))
        with contextlib.suppress(OSError, ValueError):
            pending = scrape(self.port).get("arete_maestro_store_pending_rows", 0)
            step.pending_max = max(step.pending_max, int(pending))
        return self.stored

    def finish(self, report: Report, step: Step) -> None:
        stored = stored_per_agent(self.db)
        step.got = sum(count for count, _ in stored.values())
        lost = 0
        for index, sent in enumerate(report.sent):
            count, last = stored.get(report.name(index), (0, 0))
            lost += max(0, sent - count)
            if count > sent or (count and last != sent):
                step.problems.append(f"{report.name(index)}: stored {count} up to seq {last}")
        step.lost = lost
        del step.problems[5:]


def stored_per_agent(db: Path) -> dict[str, tuple[int, int]]:
    """``{agent name: (rows, max seq)}`` from the maestro's store (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT a.name, count(*), max(s.seq) FROM samples AS s"
            " JOIN agents AS a ON a.id = s.agent_id GROUP BY s.agent_id"
        ).fetchall()
    return {name: (count, last) for name, count, last in rows}


def wait(what: str, ok: Callable[[], bool], started: Started, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if started.popen.poll() is not None:
            raise RuntimeError(f"{started.name} exited:\n{started.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s:\n{started.tail()}")
        time.sleep(0.2)


def profile(
    procs: Procs, consumer: Consumer, args: argparse.Namespace, agents: int
) -> Started | None:
    """py-spy attached to the maestro for the window (``--profile DIR``), else None."""
    if args.profile is None or consumer.name != "maestro":
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"maestro-{agents}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(consumer.started.popen.pid), "--format", "raw"]
    argv += ["--threads", "--nonblocking", "--rate", "97", "--output", str(out)]
    return procs.start("py-spy", [*argv, "--duration", str(int(args.window))])


def watch_load(generator: Started, watched: list[Started], consumer: Consumer, step: Step) -> None:
    """While the generator runs: CPU polls, the consumer's progress, a line every 10 s."""
    next_progress = time.monotonic() + 10
    while generator.popen.poll() is None:
        for w in watched:
            w.poll_cpu()
        got = consumer.poll(step)
        if time.monotonic() >= next_progress:
            next_progress += 10
            print(
                f"  {step.consumer} N={step.agents}: consumed={got} lag_max_s={step.lag_max_s:.2f}",
                file=sys.stderr,
            )
        time.sleep(1.0)


def drain(
    consumer: Consumer, report: Report, step: Step, watched: list[Started], timeout: float
) -> None:
    """Wait until the consumer has everything; ``step.drain_s`` stays None if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        got = consumer.poll(step)
        if got >= report.sent_total:
            step.drain_s = max(0.0, time.time() - report.last_send)
            return
        if time.monotonic() > deadline or consumer.started.popen.poll() is not None:
            return
        for w in watched:
            w.poll_cpu()
        time.sleep(0.2)


def run_step(kind: str, agents: int, args: argparse.Namespace, top: Path) -> Step:
    step = Step(kind, agents, args.window)
    workdir = Path(tempfile.mkdtemp(prefix=f"{kind}-{agents}-", dir=top))
    procs = Procs(workdir)
    try:
        broker = start_broker(procs, workdir / "data")
        consumer: Consumer
        consumer = Bare(procs, broker, workdir) if kind == "bare" else MaestroProc(procs, broker)
        wait(kind, consumer.ready, consumer.started, READY_TIMEOUT_S)
        report_file = workdir / "loadgen.json"
        options = ["--agents", str(agents), "--duration", str(args.window)]
        options += ["--prefix", "a", "--connections", str(args.connections)]
        if args.workers:
            options += ["--workers", str(args.workers)]
        generator = procs.start("loadgen", loadgen_argv(broker, report_file, *options))
        watched = [broker.started, consumer.started]
        spy = profile(procs, consumer, args, agents)
        watch_load(generator, watched, consumer, step)
        if not report_file.exists():
            raise RuntimeError(f"the load generator wrote no report:\n{generator.tail()}")
        report = Report.load(report_file)
        step.sent = report.sent_total
        step.generator_valid = report.valid
        step.generator_rate = report.achieved_rate
        step.generator_behind_s = report.behind_max_s
        step.problems += report.problems
        drain(consumer, report, step, watched, args.drain)
        span = (report.first_send, report.last_send)
        step.cpu = {
            kind: consumer.started.cpu_pct(*span),
            "broker": broker.started.cpu_pct(*span),
            "generator": report.cpu_s / max(1e-9, span[1] - span[0]) * 100,
        }
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.popen.wait(30)
        procs.stop(consumer.started)
        consumer.finish(report, step)
        on_time = step.drain_s is not None and step.drain_s <= args.keep_up
        step.passed = report.valid and step.lost == 0 and on_time
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return step


def ladder(kind: str, steps: Sequence[int], args: argparse.Namespace, top: Path) -> list[Step]:
    done: list[Step] = []
    for agents in steps:
        print(f"{kind}: {agents} agents x 1 Hz for {args.window:.0f} s ...", file=sys.stderr)
        step = run_step(kind, agents, args, top)
        done.append(step)
        print(f"{kind}: {describe(step)}", file=sys.stderr)
        if not step.passed:
            break
    return done


def describe(step: Step) -> str:
    verdict = "PASS" if step.passed else ("INVALID" if not step.generator_valid else "FAIL")
    drained = "never" if step.drain_s is None else f"{step.drain_s:.1f}s"
    cpu = " ".join(f"{k}={v:.0f}%" for k, v in step.cpu.items() if v is not None)
    return (
        f"N={step.agents} {verdict} sent={step.sent} got={step.got} lost={step.lost} "
        f"drained={drained} lag_max={step.lag_max_s:.2f}s cpu[{cpu}] {'; '.join(step.problems)}"
    )


# -- report ----------------------------------------------------------------------------------
def ceiling(steps: Sequence[Step]) -> tuple[int, bool]:
    """Largest passing N, and whether a step above it failed (else it is a lower bound)."""
    passed = [s.agents for s in steps if s.passed]
    return (max(passed) if passed else 0), any(not s.passed for s in steps)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    version = (mosquitto.stdout or mosquitto.stderr).splitlines()[0:1]
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, Python "
        f"{platform.python_version()}, paho-mqtt {metadata.version('paho-mqtt')}, "
        f"SQLite {sqlite3.sqlite_version}, {version[0] if version else 'mosquitto'}"
    )


def fmt_cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render(bare: Sequence[Step], maestro: Sequence[Step], args: argparse.Namespace) -> str:
    lines = [
        "## Maestro ingest ceiling (`bench/ingest.py`)",
        "",
        f"{time.strftime('%Y-%m-%d')}, {args.window:.0f} s per step. Machine: {machine()}. "
        "Each step: a fresh broker, one consumer, and `bench/loadgen.py` offering N agents "
        "x 1 Hz of QoS 1 `metrics` (one ~500-byte 2-core sample each, sends spread evenly "
        "over the second) over paho connections from worker processes. Generator, broker "
        "and consumer share the same 2 cores, so the generator's own CPU (column) is taken "
        "from the consumer's budget. A step passes with zero loss (maestro: every agent's "
        f"every seq in its SQLite store) and at most {args.keep_up:.0f} s behind "
        '(everything consumed that long after the last publish); "missing at the end" is '
        f"what was still not consumed {args.drain:.0f} s after the load stopped. CPU is % of "
        "one core over the window.",
        "",
        "| consumer | N agents (msg/s) | sent | consumed | missing at the end "
        "| done after last send | max lag s | consumer CPU % | broker CPU % "
        "| generator CPU % | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in [*bare, *maestro]:
        result = (
            "pass"
            if step.passed
            else ("**invalid**: " if not step.generator_valid else "**fail**: ")
        )
        if not step.passed:
            reasons = list(step.problems)
            if step.lost:
                reasons.append(f"{step.lost:,} never consumed")
            if step.drain_s is None or step.drain_s > args.keep_up:
                reasons.append("fell behind")
            result += "; ".join(reasons)
        consumer = "bare paho subscriber" if step.consumer == "bare" else "maestro"
        drained = "never" if step.drain_s is None else f"{step.drain_s:.1f} s"
        lines.append(
            f"| {consumer} | {step.agents:,} | {step.sent:,} | {step.got:,} | {step.lost:,} | "
            f"{drained} | {step.lag_max_s:.2f} | {fmt_cpu(step.cpu.get(step.consumer))} | "
            f"{fmt_cpu(step.cpu.get('broker'))} | {fmt_cpu(step.cpu.get('generator'))} | "
            f"{result} |"
        )
    lines += ["", *verdict_lines(bare, maestro)]
    return "\n".join(lines)


def verdict_lines(bare: Sequence[Step], maestro: Sequence[Step]) -> list[str]:
    bare_n, bare_bounded = ceiling(bare)
    m_n, m_bounded = ceiling(maestro)
    bare_s = f"{bare_n:,}" if bare_bounded else f">= {bare_n:,} (no step failed)"
    m_s = f"{m_n:,}" if m_bounded else f">= {m_n:,} (no step failed)"
    lines = [
        f"- Bare paho subscriber ceiling: **{bare_s}** agents x 1 Hz.",
        f"- Maestro ceiling: **{m_s}** agents x 1 Hz.",
    ]
    if bare_n and maestro:
        ratio = m_n / bare_n
        lines.append(
            f"- **Ratio maestro / bare: {ratio:.2f}x** (goal >= {GOAL_RATIO}x: "
            f"{'met' if ratio >= GOAL_RATIO else 'not met'})."
        )
    if maestro:
        lines.append(
            f"- Goal {GOAL_AGENTS:,} agents at 1 Hz: "
            f"{'met' if m_n >= GOAL_AGENTS else '**not met**'}."
        )
    invalid = [s for s in [*bare, *maestro] if not s.generator_valid]
    if invalid:
        lines.append(
            "- A step marked invalid ended its ladder because the generator could not offer "
            "the load on time; the ceiling above it is unknown on this machine."
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Largest N agents x 1 Hz the maestro stores with zero loss, beside a bare "
        "paho subscriber's ceiling measured in the same run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Also: `ingest.py bare-subscriber --help` (the baseline process).",
    )
    parser.add_argument("--window", type=float, default=60.0, help="seconds of load per step")
    parser.add_argument(
        "--ladder", default=",".join(map(str, MAESTRO_LADDER)), help="maestro steps (agents)"
    )
    parser.add_argument(
        "--bare-ladder",
        default=",".join(map(str, BARE_LADDER)),
        help="bare subscriber steps (agents)",
    )
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--skip-maestro", action="store_true")
    parser.add_argument(
        "--keep-up",
        type=float,
        default=5.0,
        help="a consumer done later than this after the last publish fell behind",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=60.0,
        help="seconds to wait for the consumer to finish after the load",
    )
    parser.add_argument("--connections", type=int, default=2, help="per generator worker")
    parser.add_argument("--workers", type=int, default=0, help="generator processes (0: auto)")
    parser.add_argument("--profile", type=Path, help="run the maestro under py-spy; output here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        args.ladder = [int(n) for n in args.ladder.split(",") if n]
        args.bare_ladder = [int(n) for n in args.bare_ladder.split(",") if n]
    except ValueError:
        parser.error("ladders are comma-separated agent counts, e.g. 5000,10000")
    if args.window <= 0 or any(n <= 0 for n in [*args.ladder, *args.bare_ladder]):
        parser.error("--window and the ladder steps must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bare-subscriber"]:
        return bare_subscriber(argv[1:])
    args = parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="arete-bench-ingest-"))
    bare: list[Step] = []
    maestro: list[Step] = []
    try:
        if not args.skip_bare:
            bare = ladder("bare", args.bare_ladder, args, top)
        if not args.skip_maestro:
            maestro = ladder("maestro", args.ladder, args, top)
    except KeyboardInterrupt:
        print("interrupted; processes stopped", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    body = render(bare, maestro, args)
    print(body)
    if args.write:
        print(f"wrote {replace_section('maestro-ingest', body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
