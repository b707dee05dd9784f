"""Load generator: many virtual agents over a few paho connections, in worker processes.

Each virtual agent publishes one ``metrics`` message a second (QoS 1, one realistic
``Sample`` in it, ``seq`` +1 each time, like a real agent) or, with ``--mode heartbeat``,
one ``heartbeat`` every ``--heartbeat-s`` (QoS 0, like a real agent). The agents' send
times are spread evenly over each period, so the broker sees a steady stream rather
than one burst a second. Before that, each agent may publish its retained ``online``
status (``--status``) so the maestro registers it as a real agent would.

Why several processes and connections: one paho client costs about 35 µs of CPU per
QoS 1 message (publish and PUBACK), so one Python process tops out near 25 k messages/s;
the workers share the agents (agent ``k`` always uses the same connection, so its
messages stay in order). MQTT 3.1.1 is the default for the generator's connections:
paho decodes an MQTT 5 PUBACK's properties in Python, which costs the generator a
quarter more CPU, and the broker forwards exactly the same messages either way.

The generator reports what it did (``--report FILE``, JSON): per agent the number of
messages sent (seq runs 1..count), how many the broker acknowledged, the achieved rate,
its own CPU, and how far behind schedule it fell. **A generator that fell more than
``MAX_BEHIND_S`` behind did not offer the load it was asked for: the run is invalid**
(``valid: false`` in the report), whatever the consumer did.

Usage::

    python bench/loadgen.py --port 1883 --password-file DIR/secrets/maestro.password \\
        --root arete --agents 5000 --duration 60 --report /tmp/sent.json

The bottom of this module holds the small process harness the benchmarks share
(free ports, a broker in a temporary data dir, CPU of a process tree from /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from update_sim import UpdateSim

from arete.payloads import Heartbeat, Metrics, Mount, Sample, encode
from arete.topics import Kind, Topics

REPO = Path(__file__).resolve().parents[1]
ARETE = [sys.executable, "-m", "arete_cli"]
MAX_BEHIND_S = 1.0  # a message sent later than this after its due time invalidates the run
ACK_DRAIN_S = 30.0  # how long the generator waits for the last PUBACKs
PROGRESS_EVERY_S = 10.0
TICK_S = 0.005
SEQ_MARK = 987_654_321  # stand-ins replaced in the pre-encoded templates
TS_MARK = 1_999_999_999.5
EPOCH = 1


# -- payloads ------------------------------------------------------------------------------
def metrics_template(rng: random.Random) -> bytes:
    """A 2-core VM's ``metrics`` message with ``%(seq)d`` / ``%(ts).3f`` to fill in."""
    cpus = [round(rng.uniform(0, 100), 1) for _ in range(2)]
    total = rng.randrange(2**34, 2**38)
    used = rng.randrange(0, total)
    sample = Sample(
        ts=TS_MARK,
        seq=SEQ_MARK,
        cpu=round(sum(cpus) / 2, 1),
        cpus=cpus,
        load=(round(rng.uniform(0, 2), 2), round(rng.uniform(0, 2), 2), 0.42),
        mem=round(rng.uniform(5, 95), 1),
        mem_used=rng.randrange(2**30, 2**32),
        mem_total=2**32,
        swap=round(rng.uniform(0, 10), 1),
        disk=round(used / total * 100, 1),
        mounts=[Mount("/", total, used, round(used / total * 100, 1))],
        disk_read_bps=round(rng.uniform(0, 5e7), 1),
        disk_write_bps=round(rng.uniform(0, 5e7), 1),
        disk_read_iops=round(rng.uniform(0, 900), 1),
        disk_write_iops=round(rng.uniform(0, 900), 1),
        net_rx_bps=round(rng.uniform(0, 1e8), 1),
        net_tx_bps=round(rng.uniform(0, 1e8), 1),
        uptime_s=round(rng.uniform(1e3, 1e7), 1),
        procs=rng.randrange(80, 400),
    )
    data = encode(Metrics(epoch=EPOCH, seq=SEQ_MARK, samples=[sample]))
    return _with_marks(data)


def heartbeat_template() -> bytes:
    return _with_marks(encode(Heartbeat(epoch=EPOCH, seq=SEQ_MARK, ts=TS_MARK)))


def _with_marks(data: bytes) -> bytes:
    data = data.replace(b"%", b"%%")
    if str(SEQ_MARK).encode() not in data or str(TS_MARK).encode() not in data:
        raise ValueError("the payload template lost its seq/ts marks")
    data = data.replace(str(SEQ_MARK).encode(), b"%(seq)d")
    return data.replace(str(TS_MARK).encode(), b"%(ts).3f")


def fill(template: bytes, seq: int, ts: float) -> bytes:
    return template % {b"seq": seq, b"ts": ts}


def agent_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:06d}"


# -- one worker process --------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    workers: int
    agents: int  # in the whole run
    connections: int  # of this worker
    host: str
    port: int
    password: str
    root: str
    prefix: str
    mode: str  # "metrics" | "heartbeat"
    period_s: float
    duration_s: float
    status: bool
    heartbeat_s: float
    protocol: int  # 5 or 4 (3.1.1)
    version: str = "loadgen"  # in each status
    labels: tuple[tuple[str, str], ...] = ()
    answer_updates: bool = False  # bench/update_sim.py answers `update` commands
    install_s: float = 2.0  # handed over -> switched, simulated
    broken: tuple[str, ...] = ()  # agents whose new version "never proves healthy"


@dataclass
class WorkerResult:
    worker: int
    indexes: list[int] = field(default_factory=list)  # global agent indexes
    sent: list[int] = field(default_factory=list)  # messages per agent (seq 1..n)
    send_times: list[list[float]] = field(default_factory=list)  # heartbeat mode only
    status_times: list[float] = field(default_factory=list)
    acked: int = 0
    unacked: int = 0
    publish_errors: int = 0
    behind_max_s: float = 0.0
    behind_over_100ms: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    cpu_s: float = 0.0
    interrupted: bool = False
    error: str | None = None


class _Conn:
    """One paho client driven by hand (no network thread: no GIL ping-pong)."""

    def __init__(self, spec: WorkerSpec, number: int) -> None:
        version = MQTTProtocolVersion.MQTTv5 if spec.protocol == 5 else MQTTProtocolVersion.MQTTv311
        client_id = f"maestro:loadgen-{spec.prefix}-{spec.worker}-{number}-{secrets.token_hex(3)}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version
        )
        self.client.username_pw_set("maestro", spec.password)
        self.client.max_inflight_messages_set(0)  # unlimited: the broker is the limit
        self.client.max_queued_messages_set(0)
        self.acked = 0
        self.client.on_publish = self._on_publish
        self.client.connect(spec.host, spec.port, keepalive=60)
        deadline = time.monotonic() + 10
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise ConnectionError(f"no CONNACK from {spec.host}:{spec.port}")
            self.client.loop(0.05)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        self.acked += 1

    def service(self) -> None:
        client = self.client
        if client.want_write():
            client.loop_write()
        client.loop_misc()

    def read(self) -> None:
        self.client.loop_read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop_write()


def _pump(conns: Sequence[_Conn], timeout: float) -> None:
    for conn in conns:
        conn.service()
    socks = {c.client.socket(): c for c in conns}
    readable, _, _ = select.select([s for s in socks if s is not None], [], [], timeout)
    for sock in readable:
        socks[sock].read()


class _Stop:
    requested = False

    @classmethod
    def on_signal(cls, signum: int, frame: Any) -> None:
        cls.requested = True


def run_worker(spec: WorkerSpec, start_at: float, out: mp.Queue[WorkerResult]) -> None:
    signal.signal(signal.SIGTERM, _Stop.on_signal)
    signal.signal(signal.SIGINT, _Stop.on_signal)
    result = WorkerResult(spec.worker)
    cpu0 = time.process_time()
    try:
        _work(spec, start_at, result)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.cpu_s = time.process_time() - cpu0
    result.interrupted = _Stop.requested
    out.put(result)


def _work(spec: WorkerSpec, start_at: float, result: WorkerResult) -> None:
    mine = list(range(spec.worker, spec.agents, spec.workers))
    result.indexes = mine
    if not mine:
        return
    worker = _Worker(spec, mine, result)
    try:
        if spec.status:
            worker.publish_statuses()
        while time.time() < start_at and not _Stop.requested:
            _pump(worker.conns, min(0.05, max(0.0, start_at - time.time())))
        worker.publish_schedule(start_at)
        worker.wait_acks()
    finally:
        for conn in worker.conns:
            conn.close()


class _Worker:
    """One worker's agents (``mine``: global indexes), their connections and topics."""

    def __init__(self, spec: WorkerSpec, mine: list[int], result: WorkerResult) -> None:
        self.spec = spec
        self.mine = mine
        self.result = result
        self.topics = Topics(spec.root)
        self.names = [agent_name(spec.prefix, i) for i in mine]
        if spec.mode == "metrics":
            rng = random.Random(spec.worker)
            templates = [metrics_template(rng) for _ in range(16)]
            self.agent_topics = [self.topics.metrics(n) for n in self.names]
            self.templates = [templates[i % len(templates)] for i in mine]
            self.qos = 1
        else:
            self.agent_topics = [self.topics.heartbeat(n) for n in self.names]
            self.templates = [heartbeat_template()] * len(mine)
            self.qos = 0
            result.send_times = [[] for _ in mine]
        self.conns = [_Conn(spec, c) for c in range(spec.connections)]
        self.conn_of = [self.conns[k % len(self.conns)] for k in range(len(mine))]
        result.sent = [0] * len(mine)
        self.sim = UpdateSim(
            self.topics,
            self.names,
            version=spec.version,
            heartbeat_s=spec.heartbeat_s,
            labels=dict(spec.labels),
            install_s=spec.install_s,
            broken=spec.broken,
        )
        self.index_of = {name: k for k, name in enumerate(self.names)}
        self.sim_sent = 0  # status and reply messages (QoS 1) of the update simulation
        if spec.answer_updates:
            client = self.conns[0].client
            client.on_message = self._on_command
            client.subscribe(self.topics.all_of(Kind.CMD), qos=1)

    def _on_command(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._send_sim(self.sim.on_message(message.topic, bytes(message.payload), time.time()))

    def _send_sim(self, outs: list[Any]) -> None:
        for out in outs:
            name = self.topics.parse(out.topic).agent_id
            conn = self.conn_of[self.index_of[name]]
            conn.client.publish(out.topic, out.payload, qos=1, retain=out.retain)
            self.sim_sent += 1

    def sim_tick(self) -> None:
        """Publish the simulated updaters' status changes that are due."""
        if self.spec.answer_updates:
            self._send_sim(self.sim.due(time.time()))

    def acked(self) -> int:
        return sum(c.acked for c in self.conns)

    def publish_statuses(self) -> None:
        """Each agent's retained ``online`` status, QoS 1, all acknowledged before going on."""
        for k, name in enumerate(self.names):
            now = time.time()
            status = self.sim.status(name, now)
            self.conn_of[k].client.publish(status.topic, status.payload, qos=1, retain=True)
            self.result.status_times.append(now)
            if k % 200 == 199:
                _pump(self.conns, 0)
        deadline = time.monotonic() + ACK_DRAIN_S
        while self.acked() < len(self.names) and time.monotonic() < deadline:
            _pump(self.conns, 0.05)
        for conn in self.conns:
            conn.acked = 0

    def publish_schedule(self, start_at: float) -> None:
        """Send every message at its due time: ``start_at + round * period + phase(agent)``."""
        spec, result = self.spec, self.result
        period = spec.period_s
        phases = [index / spec.agents * period for index in self.mine]
        end = start_at + spec.duration_s
        sent, times = result.sent, result.send_times
        rounds = k = 0
        next_progress = start_at + PROGRESS_EVERY_S
        while not _Stop.requested:
            due = start_at + rounds * period + phases[k]
            if due >= end:
                break
            now = time.time()
            if due > now:
                # Sleep at least a tick: messages go out in small bursts (at most TICK_S
                # late), which costs the generator far fewer wake-ups than one per message.
                _pump(self.conns, min(max(due - now, TICK_S), 0.02))
                self.sim_tick()
                continue
            behind = now - due
            result.behind_max_s = max(result.behind_max_s, behind)
            result.behind_over_100ms += behind > 0.1
            seq = sent[k] + 1
            payload = fill(self.templates[k], seq, now)
            info = self.conn_of[k].client.publish(self.agent_topics[k], payload, qos=self.qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent[k] = seq
                if times:
                    times[k].append(now)
            else:
                result.publish_errors += 1
            result.first_send = result.first_send or now
            result.last_send = now
            k += 1
            if k == len(self.mine):
                k = 0
                rounds += 1
            if k % 64 == 0:
                _pump(self.conns, 0)
                self.sim_tick()
            if now >= next_progress:
                next_progress += PROGRESS_EVERY_S
                print(
                    f"loadgen worker={spec.worker} t={now - start_at:.0f}s sent={sum(sent)} "
                    f"behind_max_s={result.behind_max_s:.3f}",
                    file=sys.stderr,
                    flush=True,
                )

    def wait_acks(self) -> None:
        """Wait (a while) for the broker to acknowledge every QoS 1 message sent."""
        sent = sum(self.result.sent)
        if not self.qos:
            self.result.acked = sent
            return
        deadline = time.monotonic() + ACK_DRAIN_S
        while (
            self.acked() < sent + self.sim_sent
            and time.monotonic() < deadline
            and not _Stop.requested
        ):
            _pump(self.conns, 0.05)
        self.result.acked = self.acked() - self.sim_sent
        self.result.unacked = max(0, sent - self.result.acked)


# -- the run -------------------------------------------------------------------------------
@dataclass
class Report:
    """What the generator did; ``valid`` is False when it could not offer the load."""

    agents: int
    mode: str
    period_s: float
    duration_s: float
    workers: int
    connections: int
    prefix: str
    start_at: float
    sent_total: int
    acked: int
    unacked: int
    publish_errors: int
    achieved_rate: float
    offered_rate: float
    behind_max_s: float
    behind_over_100ms: int
    first_send: float
    last_send: float
    cpu_s: float
    valid: bool
    problems: list[str]
    sent: list[int]  # by agent index
    status_times: list[float]  # by agent index (empty without --status)
    send_times: list[list[float]]  # by agent index (heartbeat mode)

    def name(self, index: int) -> str:
        return agent_name(self.prefix, index)

    @classmethod
    def load(cls, path: Path) -> Report:
        return cls(**json.loads(path.read_text()))


def generate(spec_base: WorkerSpec, start_delay_s: float) -> Report:
    """Run the workers to the end and merge their results."""
    ctx = mp.get_context("fork")
    queue: mp.Queue[WorkerResult] = ctx.Queue()
    start_at = time.time() + start_delay_s
    workers = [
        ctx.Process(
            target=run_worker,
            args=(_for_worker(spec_base, w), start_at, queue),
            name=f"loadgen-{w}",
        )
        for w in range(spec_base.workers)
    ]
    for proc in workers:
        proc.start()
    results: list[WorkerResult] = []
    try:
        while len(results) < len(workers):
            with contextlib.suppress(Exception):
                results.append(queue.get(timeout=1.0))
            if _Stop.requested:
                for proc in workers:
                    if proc.pid is not None and proc.is_alive():
                        os.kill(proc.pid, signal.SIGTERM)
            if len(results) < len(workers) and not any(p.is_alive() for p in workers):
                with contextlib.suppress(Exception):
                    results.append(queue.get(timeout=2.0))
                if len(results) < len(workers):
                    break
    finally:
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return _merge(spec_base, start_at, results)


def _for_worker(spec: WorkerSpec, worker: int) -> WorkerSpec:
    base = {**asdict(spec), "worker": worker}
    return WorkerSpec(**base)


def _merge(spec: WorkerSpec, start_at: float, results: list[WorkerResult]) -> Report:
    sent = [0] * spec.agents
    status_times = [0.0] * spec.agents if spec.status else []
    send_times: list[list[float]] = (
        [[] for _ in range(spec.agents)] if spec.mode != "metrics" else []
    )
    problems: list[str] = []
    for r in results:
        if r.error:
            problems.append(f"worker {r.worker} failed: {r.error}")
        if r.interrupted:
            problems.append(f"worker {r.worker} was interrupted")
        for k, index in enumerate(r.indexes):
            sent[index] = r.sent[k] if k < len(r.sent) else 0
            if status_times and k < len(r.status_times):
                status_times[index] = r.status_times[k]
            if send_times and k < len(r.send_times):
                send_times[index] = r.send_times[k]
    if len(results) < spec.workers:
        problems.append(f"only {len(results)} of {spec.workers} workers reported")
    behind = max((r.behind_max_s for r in results), default=0.0)
    if behind > MAX_BEHIND_S:
        problems.append(f"fell {behind:.2f} s behind schedule (limit {MAX_BEHIND_S} s)")
    unacked = sum(r.unacked for r in results)
    if unacked:
        problems.append(f"{unacked} messages never acknowledged by the broker")
    first = min((r.first_send for r in results if r.first_send), default=0.0)
    last = max((r.last_send for r in results), default=0.0)
    total = sum(sent)
    return Report(
        agents=spec.agents,
        mode=spec.mode,
        period_s=spec.period_s,
        duration_s=spec.duration_s,
        workers=spec.workers,
        connections=spec.connections * spec.workers,
        prefix=spec.prefix,
        start_at=start_at,
        sent_total=total,
        acked=sum(r.acked for r in results),
        unacked=unacked,
        publish_errors=sum(r.publish_errors for r in results),
        achieved_rate=total / (last - first) if last > first else 0.0,
        offered_rate=spec.agents / spec.period_s,
        behind_max_s=behind,
        behind_over_100ms=sum(r.behind_over_100ms for r in results),
        first_send=first,
        last_send=last,
        cpu_s=sum(r.cpu_s for r in results),
        valid=not problems,
        problems=problems,
        sent=sent,
        status_times=status_times,
        send_times=send_times,
    )


def workers_for(agents: int, period_s: float) -> int:
    """One worker per ~12 k messages/s (half a core of paho each), at most the CPUs."""
    rate = agents / period_s
    return max(1, min(os.cpu_count() or 1, -(-int(rate) // 12_000)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Publish N virtual agents' metrics (or heartbeats) at a steady rate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="the maestro account's password (DATA_DIR/secrets/maestro.password)",
    )
    parser.add_argument("--root", default="arete", help="topic root")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--prefix", default="lg", help="agent ids are PREFIX000000 ...")
    parser.add_argument("--mode", choices=["metrics", "heartbeat"], default="metrics")
    parser.add_argument("--rate-hz", type=float, default=1.0, help="metrics per agent per second")
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=10.0,
        help="heartbeat period (heartbeat mode) and the status's heartbeat_s",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: by the rate)")
    parser.add_argument("--connections", type=int, default=2, help="per worker")
    parser.add_argument(
        "--status",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish each agent's retained online status first",
    )
    parser.add_argument(
        "--protocol",
        type=int,
        choices=[4, 5],
        default=4,
        help="MQTT version of the generator's connections (4 = 3.1.1)",
    )
    parser.add_argument(
        "--start-delay",
        type=float,
        default=2.0,
        help="seconds between the statuses and the first message",
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--version", default="loadgen", help="the version each status shows")
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument(
        "--answer-updates",
        action="store_true",
        help="agents answer `update` and move their status as a host updater would"
        " (bench/update_sim.py)",
    )
    parser.add_argument("--install-s", type=float, default=2.0, help="simulated install time")
    parser.add_argument(
        "--broken",
        default="",
        help="comma-separated agent ids whose new version rolls back by itself",
    )
    args = parser.parse_args(argv)
    if any("=" not in pair for pair in args.label):
        parser.error("--label reads KEY=VALUE")
    if args.agents < 1 or args.duration <= 0 or args.rate_hz <= 0 or args.heartbeat_s <= 0:
        parser.error("--agents, --duration, --rate-hz and --heartbeat-s must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        password = args.password_file.read_text().strip()
        Topics(args.root)
    except (OSError, ValueError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    period = 1.0 / args.rate_hz if args.mode == "metrics" else args.heartbeat_s
    spec = WorkerSpec(
        worker=0,
        workers=args.workers or workers_for(args.agents, period),
        agents=args.agents,
        connections=args.connections,
        host=args.host,
        port=args.port,
        password=password,
        root=args.root,
        prefix=args.prefix,
        mode=args.mode,
        period_s=period,
        duration_s=args.duration,
        status=args.status,
        heartbeat_s=args.heartbeat_s,
        protocol=args.protocol,
        version=args.version,
        labels=tuple((key, value) for key, _, value in (p.partition("=") for p in args.label)),
        answer_updates=args.answer_updates,
        install_s=args.install_s,
        broken=tuple(name for name in args.broken.split(",") if name),
    )
    signal.signal(signal.SIGTERM, _Stop.on_signal)
    signal.signal(signal.SIGINT, _Stop.on_signal)
    # The statuses of 1 k agents take a fraction of a second; the delay covers them.
    delay = args.start_delay + (args.agents / 10_000 if args.status else 0.0)
    report = generate(spec, delay)
    summary = (
        f"loadgen agents={report.agents} mode={report.mode} sent={report.sent_total} "
        f"acked={report.acked} rate={report.achieved_rate:.0f}/s "
        f"(offered {report.offered_rate:.0f}/s) behind_max_s={report.behind_max_s:.3f} "
        f"cpu_s={report.cpu_s:.1f} workers={report.workers} valid={report.valid}"
    )
    print(summary, file=sys.stderr)
    for problem in report.problems:
        print(f"loadgen INVALID: {problem}", file=sys.stderr)
    if args.report is not None:
        args.report.write_text(json.dumps(asdict(report)))
    return 0 if report.valid else 1


# -- harness shared by the benchmarks ------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


def tree_run_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` and its children has run (``schedstat``)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[0])
    return total


@dataclass
class Started:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    cpu: list[tuple[float, int]] = field(default_factory=list)  # (wall time, run ns)

    def poll_cpu(self) -> None:
        if self.popen.poll() is None:
            self.cpu.append((time.time(), tree_run_ns(self.popen.pid)))

    def cpu_pct(self, start: float, end: float) -> float | None:
        """CPU % of one core between the polls nearest inside ``[start, end]``."""
        inside = [(t, ns) for t, ns in self.cpu if start - 0.5 <= t <= end + 0.5]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / 1e9 / (t1 - t0) * 100

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Procs:
    """Every process a benchmark starts; :meth:`stop_all` stops them by PID, newest first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Started] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Started:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=REPO,
                start_new_session=True,  # Ctrl-C on the bench reaches only the bench
            )
        started = Started(name, popen, log)
        self.started.append(started)
        return started

    def stop(self, started: Started, timeout: float = 15.0) -> None:
        popen = started.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)

    def stop_all(self) -> None:
        for started in reversed(self.started):
            self.stop(started)
        self.started.clear()


@dataclass(frozen=True)
class BrokerRun:
    data_dir: Path
    port: int
    root: str
    started: Started

    @property
    def password_file(self) -> Path:
        return self.data_dir / "secrets" / "maestro.password"


def start_broker(procs: Procs, data_dir: Path, name: str = "broker") -> BrokerRun:
    """``arete broker run`` on a free port with a fresh root; returns once it listens."""
    port, root = free_port(), "b" + secrets.token_hex(4)
    argv = [*ARETE, "broker", "run", "--data-dir", str(data_dir), "--port", str(port)]
    started = procs.start(name, [*argv, "--root", root])
    deadline = time.monotonic() + 20
    while not port_open(port):
        if started.popen.poll() is not None:
            raise RuntimeError(f"the broker exited:\n{started.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not listen on {port}:\n{started.tail()}")
        time.sleep(0.05)
    return BrokerRun(data_dir, port, root, started)


def loadgen_argv(broker: BrokerRun, report: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--port",
        str(broker.port),
        "--password-file",
        str(broker.password_file),
        "--root",
        broker.root,
        "--report",
        str(report),
        *options,
    ]


if __name__ == "__main__":
    sys.exit(main())
