"""Fault: a maestro replica sharing the ingest is killed with -9 and restarted while an agent
sends per-core, per-mount and per-sensor readings; the other replica's history API still
answers the whole series (each replica stores only its share, in its own file)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arete.payloads import AgentState, Metrics, Mount, Sample, Status, encode
from tests.faults.conftest import Reliability
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

SENT = 40
SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = 'a1'"


def sample(seq: int, ts: float) -> Sample:
    return Sample(
        ts=ts,
        seq=seq,
        cpu=20.0,
        cpus=[float(seq), 50.0],
        mem=30.0,
        mounts=[Mount("/", 100, 40, 40.0)],
        temps={"coretemp": 30.0 + seq},
    )


def stored_seqs(db: Path) -> list[int]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [int(seq) for (seq,) in conn.execute(SEQS)]
    finally:
        conn.close()


def test_a_replica_killed_and_restarted_leaves_the_history_whole(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    api_server: Callable[..., ApiServer],
    start_maestro: Callable[..., MaestroProc],
    reliability: Reliability,
) -> None:
    api = api_server()  # replica "main", with the web API
    other = start_maestro("b")
    broker.add_agent("a1")
    agent = mqtt("a1", broker.password_of("a1"))
    first = time.time() - SENT
    status = Status(
        state=AgentState.ONLINE, epoch=1, ts=time.time(), version="t", host="h", heartbeat_s=10
    )
    agent.publish(broker.topics.status("a1"), encode(status), retain=True)
    for seq in range(SENT):
        if seq == SENT // 3:
            other.kill9()
        if seq == 2 * SENT // 3:
            other = start_maestro("b")
        metrics = Metrics(epoch=1, seq=seq, samples=[sample(seq, first + seq)])
        agent.publish(broker.topics.metrics("a1"), encode(metrics))
        time.sleep(0.1)
    viewer = api.client(Role.VIEWER)
    params: dict[str, Any] = {"from": first, "to": first + SENT, "step": 1, "fields": "*"}

    def history() -> dict[str, Any]:
        answer = viewer.get("/agents/a1/metrics", params=params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    started = time.monotonic()
    wait_for(lambda: len(history()["ts"]) == SENT, 30, "every sample in the history")
    whole_after = time.monotonic() - started
    got = history()
    main_seqs = stored_seqs(broker.data_dir / "maestro" / "main.db")
    b_seqs = stored_seqs(broker.data_dir / "maestro" / "b.db")
    duplicates = len(main_seqs) + len(b_seqs) - len(set(main_seqs) | set(b_seqs))
    lost = SENT - len(got["ts"])
    reliability.record(
        "maestro replica kill -9 and restart while sharing ingest: history of per-core,"
        " per-mount, per-sensor readings read whole from the other replica's API",
        detection_s=whole_after,
        lost=lost,
        duplicates=duplicates,
        notes=f"main stored {len(main_seqs)}, b stored {len(b_seqs)}; history reads both files",
    )
    assert b_seqs, "the killed replica had stored its share before the kill"
    assert lost == 0
    assert duplicates == 0
    assert got["series"]["cpu.0"]["avg"] == [float(seq) for seq in range(SENT)]
    assert got["series"]["temp:coretemp"]["avg"][-1] == 30.0 + SENT - 1
    assert set(got["series"]["mount:/"]["avg"]) == {40.0}
