"""Retiring a replica for good: its backlog is stored and its share goes to the others.

Without ``arete maestro retire`` a stopped replica's broker session lives on, and the
broker keeps routing that replica's share of the metrics into it (then drops them once
its queue is full): the other replicas never see those samples.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.procs import wait_for
from tests.real.test_maestro_ingest import stop_cleanly, stored_seqs, wait_all_stored


def retire(broker: Broker, replica: str) -> tuple[int, str]:
    done = run_cli(
        "maestro", "retire", "--data-dir", str(broker.data_dir), "--replica", replica, check=False
    )
    return done.returncode, done.stdout + done.stderr


def test_a_retired_replica_stores_its_backlog_and_hands_its_share_to_the_others(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
) -> None:
    r1, r2 = start_maestro("r1"), start_maestro("r2")
    agents = [start_agent(f"a{i}", env={"ARETE_AGENT_INTERVAL_S": "0.2"}) for i in range(3)]
    wait_for(lambda: len(stored_seqs([r2], "a0")) > 3, 20, "r2 takes its share")

    code, output = retire(broker, "r2")
    assert code == 2, "a running replica is not retired"
    assert "is running" in output

    r2.proc.signal(signal.SIGTERM)  # a clean stop keeps the session (for a restart)
    r2.proc.wait(15)
    time.sleep(2.0)  # r2's share of these seconds waits in its session on the broker
    code, output = retire(broker, "r2")
    assert code == 0, output
    assert "retired" in output
    kept_by_r2 = {f"a{i}": len(stored_seqs([r2], f"a{i}")) for i in range(3)}

    time.sleep(2.0)  # from now on r1 alone receives every sample
    last = stop_cleanly(agents)
    wait_all_stored([r1, r2], last)
    for agent_id, n in last.items():
        seqs = stored_seqs([r1, r2], agent_id)
        assert sorted(seqs) == list(range(1, n + 1)), f"{agent_id}: every seq exactly once"
        assert len(stored_seqs([r2], agent_id)) == kept_by_r2[agent_id], "r2 took no more"

    r1.proc.signal(signal.SIGTERM)
    r1.proc.wait(15)
    code, output = retire(broker, "r1")
    assert code == 2, "the last replica is not retired: nobody would receive the metrics"
    assert "no other maestro replica is online" in output
