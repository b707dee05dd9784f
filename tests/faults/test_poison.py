"""Poison messages: what one agent's credentials can publish never stops anyone.

Before the bounds, one metrics message with ``seq`` 2**63 stopped the maestro's SQLite
writer for the whole fleet (retried for ever, nothing acknowledged, back after every
restart), and a sample with ``seq`` 2**62 stamped in the year 2100 stayed the agent's
"latest" for ever, so its real memory was never judged by alert rules again.

Here three real agents run against a real broker and a real maestro (with the
InfluxDB sink on VictoriaMetrics) while a raw MQTT client logged in with one agent's
own credentials publishes every kind of out-of-bounds number. Every real sample of
every agent must be stored exactly once and reach VictoriaMetrics, the attacked
agent's real values must drive its alerts, each bad message must be counted, and a
maestro restart with a bad message waiting in its session must not get stuck.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for
from tests.fixtures.victoria import Victoria

AGENTS = ("a0", "a1", "victim")
YEAR_2100 = 4_102_444_800.0  # 2100-01-01T00:00:00Z
FORGED_SEQ = 2**53 - 1  # the largest seq in bounds
FORGED_MEM = 99.9
SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"


def agent_last_seq(agent: AgentProc) -> int:
    conn = sqlite3.connect(agent.state_dir / "agent-state.db", timeout=10)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    finally:
        conn.close()
    return int(row[0])


def metrics(epoch: int, seq: int, **sample: Any) -> bytes:
    body = {"ts": time.time(), "seq": seq, "cpu": 0.0, "mem": 0.0, **sample}
    return json.dumps({"epoch": epoch, "seq": seq, "samples": [body]}).encode()


def poison(epoch: int) -> list[tuple[str, bytes]]:
    """(what, payload): every message is refused whole or in part at decode time."""
    return [
        ("seq 2^63", metrics(epoch, 2**63)),
        ("seq 2^62, year 2100", metrics(epoch, 2**62, ts=YEAR_2100)),
        ("epoch 2^62", metrics(2**62, 10)),
        ("bytes 2^64", metrics(epoch, 11, mem_used=2**64)),
        ("rate 1e300", metrics(epoch, 12, net_rx_bps=1e300)),
        ("temperature 1e300", metrics(epoch, 13, temps={"cpu": 1e300})),
        ("load 1e300", metrics(epoch, 14, load=[1e300, 0, 0])),
        ("NaN", metrics(epoch, 15).replace(b'"cpu": 0.0', b'"cpu": NaN')),
        ("Infinity", metrics(epoch, 16).replace(b'"mem": 0.0', b'"mem": Infinity')),
        ("1e999", metrics(epoch, 17).replace(b'"mem": 0.0', b'"mem": 1e999')),
    ]


def stored(maestro: MaestroThread, agent_id: str) -> list[int]:
    return [
        row[0]
        for row in maestro.app.store.read_now(
            lambda conn: conn.execute(SEQS, (agent_id,)).fetchall()
        )
    ]


def keeps_storing(maestro: MaestroThread, within_s: float) -> None:
    """Every agent gets new samples stored (a few more than it had)."""
    before = {agent_id: len(stored(maestro, agent_id)) for agent_id in AGENTS}

    def grew() -> bool:
        return all(len(stored(maestro, a)) > n + 3 for a, n in before.items())

    wait_for(grew, within_s, "new samples of every agent stored")


def mem_alert(maestro: MaestroThread, agent_id: str) -> tuple[str, float | None] | None:
    alerts = maestro.call(maestro.app.alerts.list_alerts(agent=agent_id))
    found = [a for a in alerts if a.rule == "mem_high"]
    return (str(found[0].phase), found[0].value) if found else None  # newest first


def start(maestro_thread: Callable[..., MaestroThread], victoria: Victoria) -> MaestroThread:
    return maestro_thread(
        influx={"url": victoria.url, "flush_s": 0.2, "retry_min_s": 0.2, "retry_max_s": 1.0},
        alerts={
            "eval_every_s": 0.2,
            "group_wait_s": 0,
            # Real memory use is always above 1 %: the rule fires on real values only.
            "builtin": {"mem_high": {"threshold": 1.0, "for_s": 0, "clear_for_s": 0}},
        },
    )


def test_out_of_bounds_numbers_from_one_agent_stop_nobody_not_even_across_a_restart(  # noqa: PLR0917 - fixtures
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    victoria: Victoria,
    reliability: Reliability,
) -> None:
    maestro = start(maestro_thread, victoria)
    env = {"ARETE_AGENT_INTERVAL_S": "0.2"}
    agents = [start_agent(agent_id, env=env) for agent_id in AGENTS]
    for agent_id in AGENTS:
        maestro.wait_state(agent_id, "online", timeout=15)
    wait_for(lambda: (mem_alert(maestro, "victim") or ("",))[0] == "firing", 20, "mem_high")

    attacker = mqtt("victim", broker.password_of("victim"))  # the victim's own account
    topic = broker.topics.metrics("victim")
    epoch = maestro.sync(lambda m: m.registry.states["victim"].epoch)
    began = time.monotonic()
    for _what, payload in poison(epoch):
        attacker.publish(topic, payload, qos=1)
    # In bounds but forged: the largest seq there is, stamped now. It is stored (nothing
    # tells it from a real sample), but it must not stay "latest" (it did: by seq).
    attacker.publish(topic, metrics(epoch, FORGED_SEQ, mem=FORGED_MEM), qos=1)
    # One more in the year 2100 with a seq in bounds: refused as ts_future.
    attacker.publish(topic, metrics(epoch, 2**52, ts=YEAR_2100), qos=1)

    counted = len(poison(epoch)) + 1

    def all_counted() -> bool:
        errors = maestro.sync(lambda m: sum(m.ingest.errors.values()))
        return errors >= counted

    wait_for(all_counted, 15, "every bad message counted")
    detection_s = time.monotonic() - began
    errors = maestro.sync(lambda m: dict(m.ingest.errors))
    assert errors.get(("metrics", "ts_future")) == 1
    assert errors.get(("metrics", "schema"), 0) >= 7
    assert errors.get(("metrics", "malformed"), 0) >= 2

    # Storage goes on for everyone, the attacked agent included.
    keeps_storing(maestro, within_s=20)
    # Its real memory is judged again at once, not the forged value.
    wait_for(
        lambda: maestro.sync(lambda m: m.ingest.latest["victim"][1][1]) != FORGED_SEQ,
        5,
        "a real sample to be the latest again",
    )
    wait_for(
        lambda: (mem_alert(maestro, "victim") or ("", None))[1] not in (None, FORGED_MEM),
        5,
        "mem_high on the real value",
    )
    phase, value = mem_alert(maestro, "victim") or ("", None)
    assert phase == "firing"
    assert value is not None
    assert value > 1.0
    latest = maestro.sync(lambda m: m.registry.view("victim")["metrics"])
    assert latest["mem"] != FORGED_MEM
    assert latest["ts"] < time.time() + 5
    # Liveness never noticed anything: every agent stayed online, the victim included.
    assert maestro.states() == dict.fromkeys(AGENTS, "online")
    alerts = maestro.call(maestro.app.alerts.list_alerts())
    rules = {a.rule for a in alerts if a.agent in AGENTS}
    assert rules <= {"mem_high", "cpu_high"}, "no liveness alert: the attack paged nothing"

    # A restart with a bad message waiting in the maestro's session does not get stuck.
    maestro.stop()
    attacker.publish(topic, metrics(epoch, 2**63), qos=1)
    time.sleep(1.0)
    maestro = start(maestro_thread, victoria)
    restarted = time.monotonic()
    keeps_storing(maestro, within_s=20)
    resumed_s = time.monotonic() - restarted
    assert maestro.sync(lambda m: m.ingest.errors[("metrics", "schema")]) >= 1

    for agent in agents:
        agent.signal(signal.SIGTERM)
    last = {}
    for agent in agents:
        agent.proc.wait(15)
        last[agent.agent_id] = agent_last_seq(agent)

    def complete() -> bool:
        return all(len(set(stored(maestro, a)) - {FORGED_SEQ}) >= n for a, n in last.items())

    wait_for(complete, 30, "every real sample stored", step=0.3)
    lost = duplicates = 0
    for agent_id, n in last.items():
        seqs = [seq for seq in stored(maestro, agent_id) if seq != FORGED_SEQ]
        lost += n - len(set(seqs))
        duplicates += len(seqs) - len(set(seqs))
        assert sorted(seqs) == list(range(1, n + 1)), f"{agent_id}: every seq exactly once"
    assert stored(maestro, "victim").count(FORGED_SEQ) == 1, "the forged in-bounds sample"

    def in_victoria() -> bool:
        return all(len(victoria.export("arete_mem", a)) >= last[a] for a in ("a0", "a1"))

    wait_for(in_victoria, 30, "the sink to deliver every point", step=0.5)
    for agent_id in ("a0", "a1"):
        points = victoria.export("arete_mem", agent_id)
        assert len(points) == last[agent_id], f"{agent_id}: every stored point, once"
    assert len(victoria.export("arete_mem", "victim")) >= last["victim"]

    reliability.record(
        "poison messages from one agent's credentials (seq 2^63, year 2100, NaN, 1e300...)",
        detection_s=detection_s,
        lost=lost,
        duplicates=duplicates,
        pages_expected=0,
        pages_sent=0,
        notes=(
            f"{counted} bad messages counted and dropped; storage, sink and alerts on real"
            f" values went on for all 3 agents; a restart with one waiting resumed storing"
            f" in {resumed_s:.1f} s; no notifier configured"
        ),
    )
    assert lost == 0
    assert duplicates == 0
