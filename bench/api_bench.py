"""The web API's costs, each next to a baseline measured in the same run (issue 5).

One stack for the whole run: ``arete broker run`` and ``arete web run`` (the maestro and
the API in one process) in a temporary data dir, the load generator (``loadgen.py``)
offering 1,000 agents x 1 Hz of ``metrics`` (with their retained statuses), and one
small paho client in this process, the *responder*, that answers every command on
``<root>/cmd/+`` at once (``accepted`` -> ``running`` -> ``ok``, MQTT 5 ResponseTopic and
CorrelationData, as an agent does) and also times every ``metrics`` message it sees.

1. Sample to browser: websocket clients on ``/ws`` follow all 1,000 agents; latency is
   receive time - the sample's ``ts``. Baseline: the same samples straight off the broker
   (the responder's subscription), receive time - ``ts``.
2. Command round trip: ``POST /agents/X/command?wait=true {"name": "metrics"}`` to one
   agent, vs a raw MQTT request/response (a Command on ``cmd/<id>``, the responder's
   replies, time to the ``ok``) over the same broker.
3. A job to the 1,000 agents (batch_size 1000): POST /jobs until GET /jobs/{id} says
   done. Baseline: the raw MQTT request/response round trip of one command.
4. History: 24 h of 1 s samples of one agent written into the maestro's store before it
   starts; ``GET /agents/{id}/metrics`` over 24 h with ~1000 buckets (median of 10).
   Baseline: the same query (``query_history``) on a plain SQLite connection.

Usage::

    python bench/api_bench.py --quick      # shorter windows
    python bench/api_bench.py --write      # puts the table in BENCHMARKS.md (section ``api``)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import websockets
from loadgen import ARETE, BrokerRun, Procs, Started, agent_name, free_port, port_open, start_broker
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sections import replace_section

from arete.payloads import (
    AgentState,
    Command,
    Reply,
    ReplyState,
    Sample,
    Status,
    decode_command,
    encode,
)
from arete.topics import Kind, Topics
from maestro.store.core import Store
from maestro.store.query import query_history
from maestro.store.rows import to_row

AGENTS = 1000
PREFIX = "lg"
HIST_AGENT = "hist000000"
RAW_AGENT = "rawping0000"
DAY_S = 86_400.0
BUCKETS = 1000
WS_MAX_STREAMS = 200  # web_api/live.py MAX_STREAMS: one connection follows at most 200 agents
GOAL_LATENCY_P99_MS = 250.0
GOAL_COMMAND_RATIO = 3.0
GOAL_JOB_S = 2.0
GOAL_HISTORY_MS = 100.0


# -- the responder: a fake fleet that answers every command --------------------------------
@dataclass
class Responder:
    """One paho client (network thread) answering ``cmd/+`` and timing ``metrics/+``."""

    broker: BrokerRun
    password: str
    topics: Topics = field(init=False)
    client: mqtt.Client = field(init=False)
    answered: int = 0
    mqtt_latency_ms: list[float] = field(default_factory=list)
    measuring: bool = False
    pings: dict[bytes, threading.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = Topics(self.broker.root)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"maestro:bench-responder-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set("maestro", self.password)
        self.client.max_inflight_messages_set(0)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("the responder got no CONNACK")
        for topic in (
            self.topics.all_of(Kind.CMD),
            self.topics.all_of(Kind.METRICS),
            self.topics.reply(RAW_AGENT),
        ):
            self.client.subscribe(topic, qos=1)

    def announce(self, agent_id: str) -> None:
        """A retained ``online`` status, so the maestro's registry knows ``agent_id``."""
        status = Status(
            state=AgentState.ONLINE,
            epoch=1,
            ts=time.time(),
            version="bench",
            host=agent_id,
            heartbeat_s=3600.0,
        )
        self.client.publish(self.topics.status(agent_id), encode(status), qos=1, retain=True)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            parsed = self.topics.parse(msg.topic)
        except Exception:
            return
        if parsed.kind == Kind.METRICS:
            if self.measuring:
                ts = json.loads(msg.payload)["samples"][-1]["ts"]
                self.mqtt_latency_ms.append((now - ts) * 1000)
        elif parsed.kind == Kind.CMD:
            self._answer(msg)
        elif parsed.kind == Kind.REPLY:
            reply = json.loads(msg.payload)
            correlation = getattr(msg.properties, "CorrelationData", b"")
            event = self.pings.get(correlation)
            if event is not None and reply.get("state") == ReplyState.OK:
                event.set()

    def _answer(self, msg: mqtt.MQTTMessage) -> None:
        try:
            cmd = decode_command(msg.payload)
        except Exception:
            return
        response_topic = getattr(msg.properties, "ResponseTopic", None)
        correlation = getattr(msg.properties, "CorrelationData", None)
        if not response_topic or correlation is None:
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        for state in (ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK):
            result = {"bench": True} if state == ReplyState.OK else None
            reply = Reply(id=cmd.id, state=state, ts=time.time(), result=result)
            self.client.publish(response_topic, encode(reply), qos=1, properties=props)
        self.answered += 1

    def raw_round_trip(self, timeout: float = 5.0) -> float:
        """One Command on ``cmd/RAW_AGENT`` to this responder; seconds until its ``ok``."""
        now = time.time()
        cmd = Command(
            id=f"c-{uuid.uuid4().hex[:12]}",
            name="metrics",
            issued_at=now,
            expires_at=now + 60,
        )
        correlation = uuid.uuid4().bytes
        event = threading.Event()
        self.pings[correlation] = event
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        props.ResponseTopic = self.topics.reply(RAW_AGENT)
        props.MessageExpiryInterval = 60
        start = time.perf_counter()
        self.client.publish(self.topics.cmd(RAW_AGENT), encode(cmd), qos=1, properties=props)
        if not event.wait(timeout):
            raise TimeoutError("no raw ok reply")
        elapsed = time.perf_counter() - start
        del self.pings[correlation]
        return elapsed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# -- setup ---------------------------------------------------------------------------------
def seed_history(db_file: Path, agent: str, end: float) -> int:
    """24 h of 1 s samples of ``agent``, written through the store as ingest does."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(db_file)
    rows = []
    start = end - DAY_S
    for i in range(int(DAY_S)):
        sample = Sample(
            ts=start + i,
            seq=i + 1,
            cpu=float(i % 100),
            mem=float((i // 60) % 100),
            disk=42.0,
            load=(0.5, 0.4, 0.3),
            procs=200,
        )
        rows.append(to_row(agent, 1, sample))
    for chunk in range(0, len(rows), 5000):
        store.submit_samples(rows[chunk : chunk + 5000])
    store.close(timeout=120)
    return len(rows)


def add_user(data_dir: Path) -> str:
    out = subprocess.run(
        [*ARETE, "users", "add", "bench", "--role", "admin", "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    tokens = [w for w in out.stdout.split() if w.startswith("arete_")]
    if not tokens:
        raise RuntimeError(f"no token in: {out.stdout!r} {out.stderr!r}")
    return tokens[-1]


def start_web(procs: Procs, data_dir: Path, stream_s: float) -> tuple[Started, int]:
    port = free_port()
    env = {
        "ARETE_WEB_RATE_PER_CLIENT": "100000",
        "ARETE_WEB_BURST_PER_CLIENT": "100000",
        "ARETE_WEB_RATE_PER_USER": "100000",
        "ARETE_WEB_BURST_PER_USER": "100000",
        "ARETE_WEB_METRIC_STREAM_S": str(stream_s),
    }
    argv = [*ARETE, "web", "run", "--data-dir", str(data_dir), "--port", str(port)]
    started = procs.start("web", argv, env=env)
    deadline = time.monotonic() + 60
    while True:
        if started.popen.poll() is not None:
            raise RuntimeError(f"the web API exited:\n{started.tail()}")
        if port_open(port):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return started, port
        if time.monotonic() > deadline:
            raise TimeoutError(f"the web API was not ready:\n{started.tail()}")
        time.sleep(0.2)


# -- measurements --------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def ws_latency(port: int, token: str, agents: list[str], window_s: float) -> list[float]:
    """Receive time - sample ts (ms) of every ``metrics`` frame over ``window_s``."""
    latencies: list[float] = []
    url = f"ws://127.0.0.1:{port}/ws?token={token}"
    origin = f"http://127.0.0.1:{port}"

    async def follow(ids: list[str], until: float) -> None:
        seen: set[str] = set()
        async with websockets.connect(url, origin=origin, max_size=2**24) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"subscribe": ids}))
            while (left := until - time.time()) > 0:
                try:
                    text = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                now = time.time()
                frame = json.loads(text)
                if frame.get("kind") == "metrics":
                    data = frame["data"]
                    # The first frame of an agent is the sample it had when we subscribed
                    # (up to a second old): a snapshot, not a new sample's trip.
                    if data["agent"] in seen:
                        latencies.append((now - data["ts"]) * 1000)
                    seen.add(data["agent"])
                elif frame.get("kind") == "error":
                    raise RuntimeError(f"websocket error: {frame}")

    until = time.time() + window_s
    chunks = [agents[i : i + WS_MAX_STREAMS] for i in range(0, len(agents), WS_MAX_STREAMS)]
    await asyncio.gather(*(follow(chunk, until) for chunk in chunks))
    return latencies


async def command_round_trips(api: httpx.AsyncClient, agent: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = await api.post(
            f"/agents/{agent}/command",
            params={"wait": "true"},
            json={"name": "metrics", "args": {}, "timeout": 10},
        )
        elapsed = time.perf_counter() - start
        body = response.json()
        if response.status_code >= 300 or body.get("state") != "ok":
            raise RuntimeError(f"command failed: {response.status_code} {body}")
        times.append(elapsed)
    return times


async def run_job(api: httpx.AsyncClient, agents: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    response = await api.post(
        "/jobs",
        json={
            "name": "metrics",
            "args": {},
            "agents": agents,
            "batch_size": 1000,
            "max_failures": 0,
            "timeout": 30,
        },
    )
    if response.status_code >= 300:
        raise RuntimeError(f"POST /jobs: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = (await api.get(f"/jobs/{job_id}")).json()
        if job["state"] != "running":
            return time.perf_counter() - start, job
        await asyncio.sleep(0.01)
    raise TimeoutError(f"job {job_id} still running")


@dataclass
class HistoryRun:
    step: float
    api_s: list[float]
    raw_s: list[float]
    buckets: int
    source: str


HISTORY_FIELDS = ("cpu", "mem", "disk")


async def history_api(api: httpx.AsyncClient, end: float, step: float, runs: int) -> HistoryRun:
    """``runs`` calls of the API for 24 h of ``HIST_AGENT`` ending at ``end``."""
    params: dict[str, str | float] = {
        "from": end - DAY_S,
        "to": end,
        "step": step,
        "fields": ",".join(HISTORY_FIELDS),
    }
    api_times, buckets, source = [], 0, ""
    for _ in range(runs):
        start = time.perf_counter()
        response = await api.get(f"/agents/{HIST_AGENT}/metrics", params=params)
        api_times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"history: {response.status_code} {response.text}")
        body = response.json()
        buckets, source = len(body["ts"]), str(body.get("source"))
    return HistoryRun(step, api_times, [], buckets, source)


def history_raw(db_file: Path, end: float, step: float, runs: int) -> list[float]:
    """The same query straight on a read-only SQLite connection (the baseline)."""
    times = []
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        for _ in range(runs):
            start = time.perf_counter()
            query_history(
                conn,
                HIST_AGENT,
                HISTORY_FIELDS,
                start=end - DAY_S,
                end=end,
                step=step,
                now=time.time(),
                raw_retention_s=48 * 3600.0,
            )
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
    return times


async def wait_known(api: httpx.AsyncClient, agents: list[str], deadline: float) -> None:
    wanted = set(agents)
    while time.monotonic() < deadline:
        response = await api.get("/agents")
        if response.status_code == 200:
            body = response.json()
            items = body if isinstance(body, list) else body.get("agents", body.get("items", []))
            known = {a.get("id") or a.get("agent") for a in items if isinstance(a, dict)}
            if wanted <= known:
                return
        await asyncio.sleep(0.5)
    raise TimeoutError("the maestro did not register every agent in time")


# -- the run -------------------------------------------------------------------------------
@dataclass
class Results:
    ws_ms: list[float] = field(default_factory=list)
    ws_other_ms: dict[float, list[float]] = field(default_factory=dict)  # other stream periods
    mqtt_ms: list[float] = field(default_factory=list)
    api_cmd_s: list[float] = field(default_factory=list)
    raw_cmd_s: list[float] = field(default_factory=list)
    job_s: float | None = None
    job: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryRun] = field(default_factory=list)
    seeded: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass
class Stack:
    """What the measurements run against (started by :func:`start_stack`)."""

    broker: BrokerRun
    web_port: int
    token: str
    history_end: float
    agents: list[str]
    responder: Responder
    procs: Procs
    web: Started

    @property
    def db_file(self) -> Path:
        return self.broker.data_dir / "maestro" / "main.db"


def start_stack(args: argparse.Namespace, work: Path, procs: Procs, results: Results) -> Stack:
    """Broker, seeded store, web API, responder, then 1000 agents of load (blocking)."""
    data_dir = work / "data"
    broker = start_broker(procs, data_dir)
    end = time.time()
    t0 = time.perf_counter()
    results.seeded = seed_history(data_dir / "maestro" / "main.db", HIST_AGENT, end)
    print(f"seeded {results.seeded} samples in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    token = add_user(data_dir)
    web, port = start_web(procs, data_dir, args.stream_s)
    responder = Responder(broker, broker.password_file.read_text().strip())
    responder.announce(HIST_AGENT)
    agents = [agent_name(PREFIX, i) for i in range(AGENTS)]
    procs.start(
        "loadgen",
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "loadgen.py"),
            *("--port", str(broker.port), "--password-file", str(broker.password_file)),
            *("--root", broker.root, "--agents", str(AGENTS), "--prefix", PREFIX),
            *("--duration", str(args.window * (1 + len(args.also_stream_s)) + 120), "--status"),
            *("--report", str(work / "loadgen.json")),
        ],
    )
    return Stack(broker, port, token, end, agents, responder, procs, web)


def restart_web(stack: Stack, stream_s: float) -> None:
    """The same maestro data dir and broker, another ``metric_stream_s`` (blocking)."""
    stack.procs.stop(stack.web)
    stack.web, stack.web_port = start_web(stack.procs, stack.broker.data_dir, stream_s)


async def measure(args: argparse.Namespace, stack: Stack, results: Results) -> None:
    agents, responder = stack.agents, stack.responder
    headers = {"Authorization": f"Bearer {stack.token}"}
    base = f"http://127.0.0.1:{stack.web_port}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
        await wait_known(api, [*agents, HIST_AGENT], deadline=time.monotonic() + 60)
        await asyncio.sleep(3)  # past the first second of samples
        print("measuring sample-to-browser latency", file=sys.stderr)
        responder.measuring = True
        results.ws_ms = await ws_latency(stack.web_port, stack.token, agents, args.window)
        responder.measuring = False
        results.mqtt_ms = list(responder.mqtt_latency_ms)

        print("measuring command round trips", file=sys.stderr)
        for _ in range(3):  # warm both paths
            await command_round_trips(api, agents[0], 1)
            await asyncio.to_thread(responder.raw_round_trip)
        for _ in range(args.commands):  # interleaved, so both see the same load
            results.api_cmd_s += await command_round_trips(api, agents[0], 1)
            results.raw_cmd_s.append(await asyncio.to_thread(responder.raw_round_trip))

        print("measuring a job to 1000 agents", file=sys.stderr)
        try:
            results.job_s, results.job = await run_job(api, agents)
        except (RuntimeError, TimeoutError) as exc:
            results.missing.append(f"job: {exc}")

        print("measuring 24 h history", file=sys.stderr)
        # ~1000 buckets: the store snaps a step >= 60 s to whole minutes (rollups), so
        # 86.4 s becomes 60 s; a step under a minute reads the 86,400 raw rows instead.
        for step in (DAY_S / BUCKETS, 59.0):
            run = await history_api(api, stack.history_end, step, 10)
            run.raw_s = await asyncio.to_thread(
                history_raw, stack.db_file, stack.history_end, step, 10
            )
            results.history.append(run)

    for stream_s in args.also_stream_s:
        print(f"sample-to-browser latency with metric_stream_s={stream_s:g}", file=sys.stderr)
        await asyncio.to_thread(restart_web, stack, stream_s)
        base = f"http://127.0.0.1:{stack.web_port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as api:
            await wait_known(api, agents, deadline=time.monotonic() + 60)
        await asyncio.sleep(3)
        results.ws_other_ms[stream_s] = await ws_latency(
            stack.web_port, stack.token, agents, args.window
        )


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(r: Results, stream_s: float) -> str:
    rows = [
        "| measure | result | baseline (same run) | ratio | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    ws50, ws99 = pct(r.ws_ms, 50), pct(r.ws_ms, 99)
    default = ", the default" if stream_s == 1.0 else ""
    mq50, mq99 = pct(r.mqtt_ms, 50), pct(r.mqtt_ms, 99)
    rows.append(
        f"| sample → browser p50, 1000 agents @ 1 Hz | {ws50:.0f} ms | {mq50:.1f} ms (MQTT "
        f"subscriber) | {ws50 / mq50:.0f}x | — | — |"
    )
    rows.append(
        f"| sample → browser p99 (`metric_stream_s` {stream_s:g} s{default}) | {ws99:.0f} ms "
        f"| {mq99:.1f} ms | {ws99 / mq99:.0f}x "
        f"| < {GOAL_LATENCY_P99_MS:.0f} ms | {'yes' if ws99 < GOAL_LATENCY_P99_MS else 'no'} |"
    )
    for other, values in r.ws_other_ms.items():
        o50, o99 = pct(values, 50), pct(values, 99)
        rows.append(
            f"| sample → browser p50 / p99 with `ARETE_WEB_METRIC_STREAM_S={other:g}` | "
            f"{o50:.0f} / {o99:.0f} ms | {mq99:.1f} ms (p99) | {o99 / mq99:.0f}x | "
            f"< {GOAL_LATENCY_P99_MS:.0f} ms | {'yes' if o99 < GOAL_LATENCY_P99_MS else 'no'} |"
        )
    api50, raw50 = statistics.median(r.api_cmd_s), statistics.median(r.raw_cmd_s)
    ratio = api50 / raw50
    rows.append(
        f"| command round trip p50 (`POST …/command?wait=true`) | {fmt_ms(api50)} | "
        f"{fmt_ms(raw50)} (raw MQTT request/response) | {ratio:.1f}x | ≤ {GOAL_COMMAND_RATIO:.0f}x "
        f"| {'yes' if ratio <= GOAL_COMMAND_RATIO else 'no'} |"
    )
    if r.job_s is not None:
        rows.append(
            f"| job to 1000 agents (batch 1000), POST → done | {r.job_s:.2f} s | "
            f"{fmt_ms(raw50)} (one raw command) | {r.job_s / raw50:.0f}x | < {GOAL_JOB_S:.0f} s "
            f"| {'yes' if r.job_s < GOAL_JOB_S else 'no'} |"
        )
    else:
        rows.append("| job to 1000 agents | not measured | | | < 2 s | — |")
    for h in r.history:
        h_api, h_raw = statistics.median(h.api_s), statistics.median(h.raw_s)
        rows.append(
            f"| history, 24 h of 1 s samples, step {h.step:g} s → {h.buckets} buckets from "
            f"{h.source}, median of {len(h.api_s)} | {fmt_ms(h_api)} | {fmt_ms(h_raw)} "
            f"(`query_history` on SQLite) | {h_api / h_raw:.1f}x | < {GOAL_HISTORY_MS:.0f} ms "
            f"| {'yes' if h_api * 1000 < GOAL_HISTORY_MS else 'no'} |"
        )
    spread = ", ".join(f"p{q} {pct(r.ws_ms, q):.0f}" for q in (10, 25, 75, 90, 95))
    notes = [
        "",
        f"Sample → browser spread (ms): {spread}.",
        f"Samples: {len(r.ws_ms)} websocket `metrics` frames (not counting the first of each "
        f"agent, the snapshot sent on subscribe), {len(r.mqtt_ms)} MQTT messages, "
        f"{len(r.api_cmd_s)} + {len(r.raw_cmd_s)} command round trips (interleaved, under the "
        f"1000-agent load), job counts {r.job.get('counts')}, {r.seeded} seeded samples.",
        f"The websocket pushes each followed agent's newest sample once every "
        f"`metric_stream_s` ({stream_s:g} s here), so the sample-to-browser latency includes up "
        f"to one such period of waiting; a connection follows at most {WS_MAX_STREAMS} agents, "
        f"so {AGENTS // WS_MAX_STREAMS} connections follow the 1000.",
    ]
    if r.missing:
        notes.append("Not measured: " + "; ".join(r.missing))
    return "\n".join(rows + notes)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md (api)")
    parser.add_argument("--quick", action="store_true", help="shorter windows")
    parser.add_argument("--window", type=float, default=None, help="websocket seconds")
    parser.add_argument("--commands", type=int, default=None, help="round trips per path")
    parser.add_argument(
        "--stream-s", type=float, default=0.1, help="ARETE_WEB_METRIC_STREAM_S (the default)"
    )
    parser.add_argument(
        "--also-stream-s",
        type=lambda text: [float(v) for v in text.split(",") if v],
        default=[1.0],
        help="comma-separated other ARETE_WEB_METRIC_STREAM_S values to measure the latency"
        " with, restarting the web API on the same data (default 0.1; '' for none)",
    )
    args = parser.parse_args(argv)
    args.window = args.window or (10.0 if args.quick else 30.0)
    args.commands = args.commands or (30 if args.quick else 100)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="arete-api-bench-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        try:
            stack = start_stack(args, work, procs, results)
            try:
                asyncio.run(measure(args, stack, results))
            finally:
                answered = stack.responder.answered
                stack.responder.close()
        except BaseException:
            for started in procs.started:
                print(f"--- {started.name}\n{started.tail(30)}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()
    print(f"responder answered {answered} commands", file=sys.stderr)
    body = f"## Web API\n\n`python bench/api_bench.py --write` ({os.cpu_count()} CPUs)\n\n"
    body += table(results, args.stream_s)
    print(body)
    if args.write:
        print(f"wrote {replace_section('api', body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
