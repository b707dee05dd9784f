"""What the agent page charts beyond the stored columns: per-core, per-mount, per-sensor and
per-GPU readings of the newest live sample, and the agent's own disk-full word."""

from __future__ import annotations

from typing import Any

from arete.payloads import AgentState, Gpu, Mount, Sample, Status
from arete.topics import Topics
from maestro.events import EventBus
from maestro.registry import Registry
from maestro.store.rows import detail_values, to_row

T0 = 1_700_000_000.0

FULL = Sample(
    ts=T0,
    seq=1,
    cpu=40.0,
    cpus=[10.0, 70.0],
    load=(0.5, 0.4, 0.3),
    mem=50.0,
    mem_used=4_000_000_000,
    mem_total=8_000_000_000,
    mounts=[Mount("/", 100, 40, 40.0), Mount("/data", 100, 90, 90.0)],
    disk_read_iops=12.0,
    uptime_s=3600.0,
    temps={"cpu": 55.0, "nvme": 40.0},
    gpu=[Gpu(0, "gpu0", util=30.0, mem_used=1, mem_total=4, temp=61.0)],
)


def test_every_per_item_reading_the_agent_sends_gets_a_flat_key() -> None:
    values = detail_values(FULL)
    assert values["cpu.0"] == 10.0
    assert values["cpu.1"] == 70.0
    assert values["mount:/"] == 40.0
    assert values["mount:/data"] == 90.0
    assert values["temp:cpu"] == 55.0
    assert values["temp:nvme"] == 40.0
    assert values["gpu.0.util"] == 30.0
    assert values["gpu.0.mem"] == 25.0
    assert values["gpu.0.temp"] == 61.0
    assert values["uptime_s"] == 3600.0
    assert values["mem_total"] == 8e9
    assert values["load5"] == 0.4
    assert values["disk_read_iops"] == 12.0


def test_a_machine_without_gpu_or_sensors_gets_no_such_keys() -> None:
    values = detail_values(Sample(ts=T0, seq=1, cpu=1.0, mem=2.0))
    assert not [k for k in values if k.startswith(("gpu.", "temp:", "cpu.", "mount:"))]


def make_registry(latest: dict[str, Any], detail: dict[str, Any]) -> Registry:
    return Registry(
        Topics("arete"),
        "main",
        EventBus(),
        contacts={},
        latest=latest,
        detail=detail,
        clock=lambda: T0,
    )


def test_the_agent_view_carries_the_detail_and_the_disk_full_word() -> None:
    latest = {"a1": (T0 + 0.2, to_row("a1", 1, FULL))}
    detail = {"a1": detail_values(FULL)}
    registry = make_registry(latest, detail)
    status = Status(
        state=AgentState.ONLINE, epoch=1, ts=T0, version="t", host="h", heartbeat_s=5,
        disk_full=True,
    )  # fmt: skip
    registry.on_status("a1", status, T0)
    view = registry.view("a1")
    assert view["disk_full"] is True
    metrics = view["metrics"]
    assert metrics["cpu"] == 40.0
    assert metrics["cpu.1"] == 70.0
    assert metrics["mount:/data"] == 90.0
    assert metrics["rx_ts"] == T0 + 0.2


def test_an_agent_without_a_sample_has_no_metrics_and_no_disk_full() -> None:
    registry = make_registry({}, {})
    registry.on_status(
        "a2", Status(state=AgentState.ONLINE, epoch=1, ts=T0, version="t", host="h",
                     heartbeat_s=5), T0,
    )  # fmt: skip
    view = registry.view("a2")
    assert view["metrics"] is None
    assert view["disk_full"] is False
