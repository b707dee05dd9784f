"""Per-core, per-mount, per-sensor and per-GPU history through a real broker, two maestro
replicas sharing the ingest (each its own SQLite file) and the web API of one of them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

from arete.payloads import AgentState, Gpu, Metrics, Mount, Sample, Status, encode
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

SAMPLES = 30
DETAIL_ROWS = "SELECT count(*) FROM detail d JOIN agents a ON a.id = d.agent_id WHERE a.name = ?"


def sample(seq: int, ts: float) -> Sample:
    return Sample(
        ts=ts,
        seq=seq,
        cpu=50.0,
        cpus=[float(seq), 100.0 - seq, 7.0, 8.0],
        mem=30.0,
        swap=5.0,
        mounts=[Mount("/", 10_000, 2_500, 25.0), Mount("/srv", 10_000, 9_000, 90.0)],
        temps={"coretemp": 40.0 + seq, "nvme": 35.0},
        gpu=[Gpu(0, "gpu0", util=60.0, mem_used=2, mem_total=8, temp=70.0, power_w=150.0)],
        uptime_s=1000.0 + seq,
        procs=300,
        disk_read_bps=1024.0,
    )


def stored_rows(data_dir: Any, replica: str) -> int:
    path = data_dir / "maestro" / f"{replica}.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(DETAIL_ROWS, ("a1",)).fetchone()[0])
    finally:
        conn.close()


def series(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get("/agents/a1/metrics", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_every_family_is_stored_by_whichever_replica_and_served_whole_by_the_api(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    api_server: Callable[..., ApiServer],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    api = api_server()  # replica "main", with the web API
    maestro_thread("b")  # a second replica sharing the metrics (shared subscription)
    broker.add_agent("a1")
    agent = mqtt("a1", broker.password_of("a1"))
    now = time.time()
    status = Status(state=AgentState.ONLINE, epoch=1, ts=now, version="t", host="h", heartbeat_s=10)
    agent.publish(broker.topics.status("a1"), encode(status), retain=True)
    first = now - SAMPLES - 5
    for seq in range(SAMPLES):
        metrics = Metrics(epoch=1, seq=seq, samples=[sample(seq, first + seq)])
        agent.publish(broker.topics.metrics("a1"), encode(metrics))
    viewer = api.client(Role.VIEWER)
    wait_for(
        lambda: stored_rows(broker.data_dir, "main") + stored_rows(broker.data_dir, "b") == SAMPLES,
        20,
        "every sample's detail stored by one replica or the other",
    )
    shares = (stored_rows(broker.data_dir, "main"), stored_rows(broker.data_dir, "b"))
    assert all(shares), f"both replicas took a share of the ingest: {shares}"

    raw = series(
        viewer,
        **{"from": first, "to": first + SAMPLES, "step": 1},
        fields="cpu.*,mount:*,mount_used:/srv,temp:*,gpu.*,swap,procs,uptime_s,disk_read_bps",
    )
    assert raw["source"] == "raw"
    assert len(raw["ts"]) == SAMPLES, "the API's replica serves the other replica's share too"
    got = raw["series"]
    assert [k for k in got if k.startswith("cpu.")] == ["cpu.0", "cpu.1", "cpu.2", "cpu.3"]
    assert got["cpu.0"]["avg"] == [float(seq) for seq in range(SAMPLES)]
    assert got["cpu.1"]["avg"][-1] == 100.0 - (SAMPLES - 1)
    assert set(got["mount:/srv"]["avg"]) == {90.0}
    assert set(got["mount_used:/srv"]["avg"]) == {9000.0}
    assert got["temp:coretemp"]["max"][-1] == 40.0 + SAMPLES - 1
    assert set(got["gpu.0.util"]["avg"]) == {60.0}
    assert set(got["gpu.0.mem"]["avg"]) == {25.0}
    assert set(got["gpu.0.power"]["avg"]) == {150.0}
    assert set(got["swap"]["avg"]) == {5.0}
    assert set(got["procs"]["avg"]) == {300.0}
    assert got["uptime_s"]["avg"][0] == 1000.0

    # An hour at one-minute steps: rollups (and the rows not folded yet) of both files.
    hour = series(viewer, **{"from": now - 3600, "to": now + 60, "step": 60}, fields="cpu.0")
    assert hour["source"] == "rollup"
    points = [v for v in hour["series"]["cpu.0"]["max"] if v is not None]
    assert max(points) == SAMPLES - 1
    assert min(v for v in hour["series"]["cpu.0"]["min"] if v is not None) == 0.0


def test_bad_history_asks_get_422_with_the_reason(
    broker: Broker, mqtt: Callable[..., MqttProbe], api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    broker.add_agent("a1")
    status = Status(
        state=AgentState.ONLINE, epoch=1, ts=time.time(), version="t", host="h", heartbeat_s=10
    )
    mqtt("a1", broker.password_of("a1")).publish(
        broker.topics.status("a1"), encode(status), retain=True
    )
    viewer = api.client(Role.VIEWER)
    wait_for(lambda: viewer.get("/agents/a1").status_code == 200, 15, "a1 known")
    now = time.time()
    asks: tuple[tuple[dict[str, Any], str], ...] = (
        ({"fields": "cpu.x"}, "unknown field"),
        ({"fields": "disk:*"}, "families: cpu.*"),
        ({"fields": "cpu.*", "from": 100, "to": 50}, "'from' must be before 'to'"),
        ({"fields": "cpu.*", "from": now - 7200, "to": now, "step": 0.5}, "at most 10000"),
    )
    for params, reason in asks:
        answer = viewer.get("/agents/a1/metrics", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert reason in answer.json()["detail"], answer.text
    assert viewer.get("/agents/a1/metrics", params={"step": 0}).status_code == 422
