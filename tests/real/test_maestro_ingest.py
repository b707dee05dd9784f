"""Nothing lost, nothing twice: a real maestro process storing real agents' samples."""

from __future__ import annotations

import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.maestro import MaestroProc, MaestroThread
from tests.fixtures.procs import wait_for
from tests.fixtures.victoria import Victoria

SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"


def agent_last_seq(agent: AgentProc) -> int:
    conn = sqlite3.connect(agent.state_dir / "agent-state.db", timeout=10)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    finally:
        conn.close()
    return int(row[0])


def stored_seqs(maestros: list[MaestroProc], agent_id: str) -> list[int]:
    seqs: list[int] = []
    for maestro in maestros:
        if Path(maestro.db).exists():
            seqs += [row[0] for row in maestro.query(SEQS, (agent_id,))]
    return seqs


def stop_cleanly(agents: list[AgentProc]) -> dict[str, int]:
    for agent in agents:
        agent.signal(signal.SIGTERM)
    for agent in agents:
        agent.proc.wait(15)
    return {agent.agent_id: agent_last_seq(agent) for agent in agents}


def wait_all_stored(maestros: list[MaestroProc], last: dict[str, int]) -> None:
    def complete() -> bool:
        return all(len(set(stored_seqs(maestros, a))) >= n for a, n in last.items())

    wait_for(complete, 30, "every sample in the store", step=0.2)


def test_kill_9_of_the_maestro_during_ingest_loses_nothing_and_stores_nothing_twice(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    first = start_maestro()  # its persistent session exists before any agent speaks
    agents = [start_agent(f"a{i}", env={"ARETE_AGENT_INTERVAL_S": "0.2"}) for i in range(3)]
    wait_for(lambda: len(stored_seqs([first], "a0")) > 10, 20, "ingest under way")
    first.kill9()
    time.sleep(2.0)  # agents keep sending; the broker keeps it for the maestro's session
    second = start_maestro()
    time.sleep(1.0)
    last = stop_cleanly(agents)
    wait_all_stored([second], last)
    for agent_id, n in last.items():
        seqs = stored_seqs([second], agent_id)
        assert sorted(seqs) == list(range(1, n + 1)), f"{agent_id}: every seq exactly once"


def test_two_replicas_split_the_ingest_store_each_sample_once_and_know_every_agent(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    replicas = [start_maestro("r1"), start_maestro("r2")]
    agents = [start_agent(f"a{i}", env={"ARETE_AGENT_INTERVAL_S": "0.2"}) for i in range(3)]
    time.sleep(4.0)
    last = stop_cleanly(agents)
    wait_all_stored(replicas, last)
    for agent_id, n in last.items():
        seqs = stored_seqs(replicas, agent_id)
        assert sorted(seqs) == list(range(1, n + 1)), f"{agent_id}: stored once in total"
        per_replica = [len(stored_seqs([r], agent_id)) for r in replicas]
        assert all(count > 0 for count in per_replica), "both replicas took a share"
    expected = {f"a{i}": "offline" for i in range(3)}

    def knows_all(replica: MaestroProc) -> bool:
        return registry(replica) == expected

    def registry(replica: MaestroProc) -> dict[str, str]:
        rows = replica.query(
            "SELECT a.name, s.state FROM agent_state s JOIN agents a ON a.id = s.agent_id"
        )
        return {str(name): str(state) for name, state in rows}

    for replica in replicas:  # each stores its registry a moment after it changes
        wait_for(partial(knows_all, replica), 5, f"{replica.replica} registry")


def test_every_stored_sample_reaches_victoriametrics_across_its_outage(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    victoria: Victoria,
) -> None:
    maestro = maestro_thread(
        influx={"url": victoria.url, "flush_s": 0.2, "retry_min_s": 0.2, "retry_max_s": 1.0}
    )
    agent = start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.2"})
    maestro.wait_state("a1", "online", timeout=10)
    time.sleep(1.5)
    victoria.stop()
    time.sleep(3.0)  # samples keep coming; the sink spools them
    assert maestro.sync(lambda m: m.influx.stats.write_errors if m.influx else 0) > 0
    victoria.start()
    last = stop_cleanly([agent])["a1"]

    def all_there() -> bool:
        victoria.force_flush()
        return len(victoria.export("arete_cpu", "a1")) >= last

    wait_for(all_there, 30, "every point in VictoriaMetrics", step=0.5)
    points = victoria.export("arete_cpu", "a1")
    stored = maestro.app.store.read_now(
        lambda conn: conn.execute(
            "SELECT CAST(round(ts * 1000) AS INTEGER), cpu FROM samples ORDER BY ts"
        ).fetchall()
    )
    assert len(stored) == last
    assert sorted(points) == sorted((ts, cpu) for ts, cpu in stored)


def test_the_maestro_reports_itself_to_prometheus(
    start_agent: Callable[..., AgentProc], start_maestro: Callable[..., MaestroProc]
) -> None:
    maestro = start_maestro()
    start_agent("a1")

    def scrape() -> str:
        url = f"http://127.0.0.1:{maestro.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    wait_for(lambda: 'arete_maestro_agents{state="online"} 1.0' in scrape(), 15, "agent counted")
    text = scrape()
    for name in (
        "arete_maestro_messages_total",
        "arete_maestro_samples_stored_total",
        "arete_maestro_store_lag_seconds",
        "arete_maestro_decode_errors_total",
        "arete_maestro_mqtt_connected 1.0",
        "arete_maestro_notifications_sent_total",
    ):
        assert name in text, name


def test_a_maestro_without_a_broker_data_dir_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    done = run_cli("maestro", "run", "--data-dir", str(tmp_path / "empty"), check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "arete broker run" in done.stderr
