"""Zero loss across broker restarts, a maestro kill -9 and a real link cut.

Real Mosquitto, real ``arete agent run`` processes (0.5 s interval) and a real
``arete maestro run``. Each scenario counts what the maestro's SQLite holds against
what the agents numbered: every seq from 1 to the agent's last, exactly once. The
broker's PUBACK is not enough (Mosquitto 2.0.11 does not restore ``$share``
subscriptions from its persistence file); the agents forget a sample only on the
maestro's ``stored/<agent_id>`` acknowledgement (docs/topics.md, "stored").
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.faults.conftest import Reliability
from tests.fixtures.agent import FAST_ENV, AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.faults import Netns
from tests.fixtures.maestro import MaestroProc, MaestroThread
from tests.fixtures.procs import Proc, port_open, wait_for
from tests.fixtures.victoria import Victoria

SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"
AGENTS = ("a0", "a1")
CATCH_UP_S = 60.0  # a bound for a loaded CI machine; the time taken is what is recorded


@dataclass
class Count:
    """What the store holds of one agent's samples 1..last."""

    last: int
    lost: int
    duplicates: int


class Store(Protocol):
    """A maestro's SQLite store, or several replicas' together."""

    def query(self, sql: str, params: tuple[Any, ...] = ...) -> list[tuple[Any, ...]]: ...


def stored(maestro: Store, agent_id: str) -> list[int]:
    return [row[0] for row in maestro.query(SEQS, (agent_id,))]


def state_db(state_dir: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{state_dir / 'agent-state.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(sql).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0


def outbox_len(state_dir: Path) -> int:
    return state_db(state_dir, "SELECT COUNT(*) FROM outbox")


def last_seq(state_dir: Path) -> int:
    """The agent's last seq; exact once it stopped cleanly (it stores it at close)."""
    return state_db(state_dir, "SELECT value FROM meta WHERE key = 'seq'")


def start_fleet(
    start_agent: Callable[..., AgentProc], start_maestro: Callable[..., MaestroProc]
) -> tuple[MaestroProc, list[AgentProc]]:
    maestro = start_maestro()
    agents = [start_agent(agent_id) for agent_id in AGENTS]
    wait_for(
        lambda: all(len(stored(maestro, a.agent_id)) >= 4 for a in agents),
        20,
        "ingest under way",
        step=0.2,
    )
    for agent in agents:
        wait_confirming(agent.state_dir)
    return maestro, agents


def wait_confirming(state_dir: Path) -> None:
    """Until the agent had its first stored acknowledgement (it waits for them from then
    on; before, with no maestro known to confirm, a PUBACK is enough)."""
    flag = state_dir / "maestro-acks"
    wait_for(flag.exists, 10, "the agent's first stored acknowledgement", step=0.1)


def caught_up(maestro: Store, state_dirs: dict[str, Path], since: float) -> float:
    """Seconds (from ``since``) until every agent's outbox is empty and its samples stored."""

    def done() -> bool:
        for agent_id, state_dir in state_dirs.items():
            seqs = set(stored(maestro, agent_id))
            if outbox_len(state_dir) or not seqs or len(seqs) < max(seqs):
                return False
        return True

    wait_for(done, CATCH_UP_S, "the agents to catch up", step=0.2)
    return time.monotonic() - since


def stop_and_count(
    maestro: Store, agents: dict[str, Proc], state_dirs: dict[str, Path]
) -> dict[str, Count]:
    """Stop the agents cleanly (SIGTERM), wait for their last samples, count them."""
    for proc in agents.values():
        proc.signal(signal.SIGTERM)
    for proc in agents.values():
        proc.wait(15)
    lasts = {agent_id: last_seq(state_dirs[agent_id]) for agent_id in agents}

    def complete() -> bool:
        return all(set(range(1, n + 1)) <= set(stored(maestro, a)) for a, n in lasts.items())

    with contextlib.suppress(TimeoutError):  # what is missing then is counted as lost
        wait_for(complete, 10, "the last samples in the store", step=0.2)
    counts = {}
    for agent_id, n in lasts.items():
        seqs = stored(maestro, agent_id)
        counts[agent_id] = Count(
            last=n,
            lost=len(set(range(1, n + 1)) - set(seqs)),
            duplicates=len(seqs) - len(set(seqs)),
        )
    return counts


def resent(maestro: MaestroProc) -> int:
    """Samples the maestro received again and stored once (its duplicate counter)."""
    url = f"http://127.0.0.1:{maestro.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith("arete_maestro_samples_duplicate")
    )


def record(
    reliability: Reliability,
    scenario: str,
    counts: dict[str, Count],
    catch_up_s: float,
    extra: str,
    *,
    max_duplicates: int = 0,
) -> None:
    lost = sum(c.lost for c in counts.values())
    duplicates = sum(c.duplicates for c in counts.values())
    produced = sum(c.last for c in counts.values())
    reliability.record(
        scenario,
        lost=lost,
        duplicates=duplicates,
        notes=(
            f"{len(counts)} agents at 0.5 s, {produced} samples, all stored "
            f"{catch_up_s:.1f} s after recovery; {extra}; pages not counted here"
            " (test_true_pages does)"
        ),
    )
    assert lost == 0, f"samples lost: {counts}"
    assert duplicates <= max_duplicates, f"samples stored twice: {counts}"


def agent_procs(agents: list[AgentProc]) -> tuple[dict[str, Proc], dict[str, Path]]:
    return {a.agent_id: a.proc for a in agents}, {a.agent_id: a.state_dir for a in agents}


def wait_port_closed(broker: Broker) -> None:
    wait_for(lambda: not port_open(broker.port, broker.host), 5, "the broker port to close")


# -- scenarios ---------------------------------------------------------------------------
def test_broker_kill_9_and_restart_after_20_s_loses_no_sample(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    maestro, agents = start_fleet(start_agent, start_maestro)
    assert broker.proc is not None
    broker.proc.signal(signal.SIGKILL)
    wait_port_closed(broker)
    time.sleep(20.0)
    broker.start()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    catch_up = caught_up(maestro, dirs, up)
    counts = stop_and_count(maestro, procs, dirs)
    record(
        reliability,
        "broker kill -9, restart after 20 s",
        counts,
        catch_up,
        f"{resent(maestro)} re-sent samples stored once",
    )


def test_clean_broker_restart_with_a_3_s_outage_loses_no_sample(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    maestro, agents = start_fleet(start_agent, start_maestro)
    broker.stop()
    time.sleep(3.0)
    broker.start()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    catch_up = caught_up(maestro, dirs, up)
    time.sleep(2.0)  # live samples flow again after the catch-up
    counts = stop_and_count(maestro, procs, dirs)
    record(
        reliability,
        "clean broker restart, 3 s outage",
        counts,
        catch_up,
        f"{resent(maestro)} re-sent samples stored once",
    )


def test_broker_restart_without_its_persistence_file_loses_no_sample(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    maestro, agents = start_fleet(start_agent, start_maestro)
    broker.stop()
    files = list(broker.data_dir.rglob("mosquitto.db"))
    assert files, "the broker saved its persistence file at stop"
    for path in files:
        path.unlink()
    time.sleep(1.0)
    broker.start()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    catch_up = caught_up(maestro, dirs, up)
    counts = stop_and_count(maestro, procs, dirs)
    record(
        reliability,
        "broker restart with mosquitto.db deleted",
        counts,
        catch_up,
        "the maestro's broker session and every queue were gone",
    )


def test_maestro_kill_9_and_restart_after_5_s_loses_no_sample(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    first, agents = start_fleet(start_agent, start_maestro)
    first.kill9()
    time.sleep(5.0)
    second = start_maestro()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    catch_up = caught_up(second, dirs, up)
    counts = stop_and_count(second, procs, dirs)
    record(
        reliability,
        "maestro kill -9, restart after 5 s",
        counts,
        catch_up,
        f"{resent(second)} re-sent samples stored once",
    )


def test_a_20_s_link_blackhole_of_an_agent_loses_no_sample(
    broker: Broker,
    procs: Callable[..., Proc],
    netns: Callable[[], Netns],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    ns = netns()
    broker.stop()
    broker.host = ns.host_ip  # the agent in the namespace reaches the host there
    broker.start()
    maestro = start_maestro()
    config = broker.add_agent("a0")
    state_dir = broker.data_dir.parent / "a0-state"
    env = {
        **FAST_ENV,
        "ARETE_AGENT_STATE_DIR": str(state_dir),
        "ARETE_AGENT_MQTT__HOST": ns.host_ip,
    }
    argv = [*ns.prefix(), sys.executable, "-m", "arete_cli", "agent", "run", "--config"]
    agent = procs([*argv, str(config)], f"agent-a0-{uuid.uuid4().hex[:6]}", env=env)
    wait_for(lambda: len(stored(maestro, "a0")) >= 4, 20, "ingest under way", step=0.2)
    wait_confirming(state_dir)

    ns.blackhole()
    cut = time.time()
    time.sleep(20.0)
    ns.restore()
    up = time.monotonic()
    catch_up = caught_up(maestro, {"a0": state_dir}, up)
    during = [
        seq
        for (seq,) in maestro.query(
            "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id "
            "WHERE a.name = 'a0' AND s.ts BETWEEN ? AND ?",
            (cut + 1.0, cut + 19.0),
        )
    ]
    assert len(during) >= 25, "the samples taken while cut off were stored afterwards"
    counts = stop_and_count(maestro, {"a0": agent}, {"a0": state_dir})
    record(
        reliability,
        "agent link blackhole (iptables DROP) for 20 s",
        counts,
        catch_up,
        f"{len(during)} samples taken while cut off",
    )


def test_broker_kill_9_with_two_replicas_sharing_the_ingest_loses_no_sample(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    replicas = [start_maestro("r1"), start_maestro("r2")]
    agents = [start_agent(agent_id) for agent_id in AGENTS]
    for agent in agents:
        wait_confirming(agent.state_dir)
    assert broker.proc is not None
    broker.proc.signal(signal.SIGKILL)
    wait_port_closed(broker)
    time.sleep(10.0)
    broker.start()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    catch_up = caught_up(ShardedStore(replicas), dirs, up)
    counts = stop_and_count(ShardedStore(replicas), procs, dirs)
    shares = {r.replica: len(stored(r, "a0")) for r in replicas}
    assert all(shares.values()), f"both replicas stored a share: {shares}"
    record(
        reliability,
        "broker kill -9, restart after 10 s, two maestro replicas",
        counts,
        catch_up,
        f"the $share subscriptions split a0 as {shares}",
        # Two stores: a sample the broker acknowledged just before it died, stored by one
        # replica whose Stored did not reach the agent within the 3 s grace (a starved
        # CPU), is re-sent and may land in the other store (docs/topics.md, Durability).
        # Seen once in CI under load; never a lost sample.
        max_duplicates=2,
    )


class ShardedStore:
    """The samples of several replicas' stores together (each stores its share)."""

    def __init__(self, replicas: list[MaestroProc]) -> None:
        self.replicas = replicas

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [row for replica in self.replicas for row in replica.query(sql, params)]


def test_an_influxdb_outage_loses_no_sample_in_either_store(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    victoria: Victoria,
    reliability: Reliability,
) -> None:
    maestro = maestro_thread(
        influx={"url": victoria.url, "flush_s": 0.2, "retry_min_s": 0.2, "retry_max_s": 1.0}
    )
    agents = [start_agent(agent_id) for agent_id in AGENTS]
    for agent in agents:
        wait_confirming(agent.state_dir)
    victoria.stop()
    time.sleep(15.0)
    victoria.start()
    up = time.monotonic()
    procs, dirs = agent_procs(agents)
    db = ThreadStore(maestro)
    catch_up = caught_up(db, dirs, up)
    counts = stop_and_count(db, procs, dirs)

    def in_victoria() -> bool:
        return all(len(victoria.export("arete_cpu", a)) >= c.last for a, c in counts.items())

    wait_for(in_victoria, 30, "the sink to deliver every point", step=0.5)
    for agent_id, count in counts.items():
        stamps = [ts for ts, _ in victoria.export("arete_cpu", agent_id)]
        count.lost += max(0, count.last - len(set(stamps)))
        count.duplicates += len(stamps) - len(set(stamps))
    record(
        reliability,
        "InfluxDB (VictoriaMetrics) down for 15 s",
        counts,
        catch_up,
        "SQLite and VictoriaMetrics both hold every sample once",
    )


class ThreadStore:
    """Reads the store of a maestro running in a thread of the test."""

    def __init__(self, maestro: MaestroThread) -> None:
        self.maestro = maestro

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.maestro.app.store.read_now(
            lambda conn: conn.execute(sql, params).fetchall()
        )
        return rows
