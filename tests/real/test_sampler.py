"""Real samples of this machine: ranges, the metrics codec, rates, failing sources, cost."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

import edge_agent.sampler
from arete.payloads import Metrics, Sample, decode_metrics, encode
from edge_agent.sampler import MIN_WINDOW_S, SLOW_EVERY_S, Sampler

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, /sys")


class FakeClock:
    """A monotonic clock the test advances, so every rate window has a known length."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def burn_cpu(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def write_and_sync(path: Path, size: int) -> None:
    with path.open("wb") as file:
        file.write(os.urandom(size))
        file.flush()
        os.fsync(file.fileno())


def test_a_real_sample_is_in_range_and_round_trips_through_the_metrics_codec() -> None:
    sampler = Sampler()
    time.sleep(MIN_WINDOW_S)
    before = time.time()
    sample = sampler.sample(7)

    assert before <= sample.ts <= time.time()
    assert sample.seq == 7
    assert len(sample.cpus) == psutil.cpu_count()
    assert all(0 <= pct <= 100 for pct in [sample.cpu, *sample.cpus])
    assert 0 < sample.mem <= 100
    assert 0 < sample.mem_used < sample.mem_total
    assert 0 <= sample.swap <= 100
    assert sample.load is not None
    assert all(value >= 0 for value in sample.load)
    assert sample.mounts, "this machine has a real root filesystem"
    assert sample.disk == max(mount.pct for mount in sample.mounts)
    assert all(0 < mount.used <= mount.total for mount in sample.mounts)
    assert sample.uptime_s > 0
    assert sample.procs >= 1

    message = Metrics(epoch=3, seq=7, samples=[sample])
    assert decode_metrics(encode(message)) == message


def test_the_second_sample_has_rates_over_the_elapsed_window(tmp_path: Path) -> None:
    sampler = Sampler()
    sampler.sample(1)
    disks_before = psutil.disk_io_counters()
    burn_cpu(0.3)
    write_and_sync(tmp_path / "blob", 4 * 1024 * 1024)
    time.sleep(0.2)
    disks_after = psutil.disk_io_counters()
    second = sampler.sample(2)

    assert second.cpu > 0
    assert max(second.cpus) > 0
    # tmp_path may sit on a tmpfs: expect a write rate only where the kernel counted one.
    if disks_before and disks_after and disks_after.write_bytes > disks_before.write_bytes:
        assert second.disk_write_bps > 0
        assert second.disk_write_iops > 0


@linux_only
def test_memory_and_swap_from_meminfo_agree_with_psutil() -> None:
    sample = Sampler().sample(1)
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    assert sample.mem_total == memory.total
    # read a moment apart: allow 2 % of the machine's memory for what changed meanwhile
    assert abs(sample.mem_used - memory.used) < 0.02 * memory.total
    assert abs(sample.mem - memory.percent) < 2.0
    assert abs(sample.swap - swap.percent) < 2.0


@linux_only
def test_network_rates_count_each_hardware_interface_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Synthetic counters on a fake clock: rx 1000 B/s and tx 500 B/s on every interface
    # of this machine that has a device link, plus interfaces that would count the same
    # traffic again (a bridge, a veth, loopback) at much higher rates.
    net = Path("/sys/class/net")
    hardware = sorted(nic.name for nic in net.iterdir() if (nic / "device").exists())
    rates = {name: (1_000, 500) for name in hardware}
    rates |= {"arete-br0": (7_000, 3_000), "vetharete": (10**6, 10**6), "lo": (10**6, 10**6)}
    clock = FakeClock()

    def counters(**_: object) -> dict[str, SimpleNamespace]:
        t = clock.now
        return {
            name: SimpleNamespace(bytes_recv=int(rx * t), bytes_sent=int(tx * t))
            for name, (rx, tx) in rates.items()
        }

    monkeypatch.setattr(psutil, "net_io_counters", counters)
    sampler = Sampler(monotonic=clock)
    clock.now += 2.0
    sample = sampler.sample(1)

    if hardware:  # the bridge's traffic crossed a hardware NIC too: not counted again
        assert (sample.net_rx_bps, sample.net_tx_bps) == (
            1_000.0 * len(hardware),
            500.0 * len(hardware),
        )
    else:  # a container with only a veth: the name rule decides, and the bridge counts
        assert (sample.net_rx_bps, sample.net_tx_bps) == (7_000.0, 3_000.0)


def fake_cpu_times(per_core: list[list[tuple[float, float]]]) -> Callable[..., object]:
    """psutil.cpu_times(percpu=True) replaying ``(busy, idle)`` seconds per core per call."""
    fields = type(psutil.cpu_times(percpu=True)[0])
    width = len(fields._fields)
    idle = fields._fields.index("idle")
    readings = iter(per_core)

    def cpu_times(**_: object) -> list[object]:
        cores: list[object] = []
        for busy, idle_s in next(readings):
            values = [0.0] * width
            values[0], values[idle] = busy, idle_s  # user, idle
            cores.append(fields(*values))
        return cores

    return cpu_times


def test_a_cpu_going_online_repeats_the_last_cpu_figures_instead_of_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = [
        [(0.0, 0.0), (0.0, 0.0)],
        [(0.5, 0.5), (0.2, 0.8)],  # 50 % and 20 %
        [(1.0, 1.0), (0.4, 1.6), (0.0, 0.0)],  # a third CPU came online
        [(1.9, 1.1), (0.6, 2.4), (0.1, 0.9)],  # 90 %, 20 %, 10 %
    ]
    monkeypatch.setattr(psutil, "cpu_times", fake_cpu_times(readings))
    clock = FakeClock()
    sampler = Sampler(monotonic=clock)
    samples = []
    for seq in (1, 2, 3):
        clock.now += 1.0
        samples.append(sampler.sample(seq))
    assert [(s.cpu, s.cpus) for s in samples] == [
        (35.0, [50.0, 20.0]),
        (35.0, [50.0, 20.0]),
        (40.0, [90.0, 20.0, 10.0]),
    ]


def test_the_process_count_is_read_every_ten_seconds_not_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listings: list[int] = []

    def pids() -> list[int]:
        listings.append(1)
        return list(range(100 + len(listings)))

    monkeypatch.setattr(psutil, "pids", pids)
    clock = FakeClock()
    sampler = Sampler(monotonic=clock)
    procs = []
    for seq in range(25):
        clock.now += 1.0
        procs.append(sampler.sample(seq).procs)
    assert len(listings) == 3
    assert procs == [101] * int(SLOW_EVERY_S) + [102] * int(SLOW_EVERY_S) + [103] * 5


def test_calls_closer_than_the_minimum_window_repeat_the_last_cpu_and_rates() -> None:
    now = [100.0]
    sampler = Sampler(monotonic=lambda: now[0])
    now[0] += 1.0
    burn_cpu(0.2)
    first = sampler.sample(1)
    burn_cpu(0.2)
    now[0] += MIN_WINDOW_S / 10
    again = sampler.sample(2)
    assert first.cpu > 0
    assert (again.cpus, again.disk_write_bps, again.net_rx_bps) == (
        first.cpus,
        first.disk_write_bps,
        first.net_rx_bps,
    )


@pytest.mark.ci_may_skip
@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="this machine has a GPU")
def test_without_a_gpu_the_sample_omits_gpu_and_raises_nothing() -> None:
    sampler = Sampler()
    sample = sampler.sample(1)
    sampler.close()
    assert sample.gpu is None
    assert "gpu" not in json.loads(encode(sample))


def test_a_failing_source_is_left_out_logged_once_and_the_sample_still_comes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def denied(*_: object, **__: object) -> object:
        raise PermissionError("denied by the test")

    monkeypatch.setattr(psutil, "pids", denied)
    monkeypatch.setattr(psutil, "disk_io_counters", denied)
    monkeypatch.setattr(psutil, "sensors_temperatures", denied, raising=False)
    caplog.set_level(logging.DEBUG, logger="arete.agent.sampler")

    sampler = Sampler()
    samples: list[Sample] = []
    for seq in (1, 2, 3):
        time.sleep(MIN_WINDOW_S)
        samples.append(sampler.sample(seq))

    assert all(s.procs == 0 and s.disk_write_bps == 0 and s.temps is None for s in samples)
    assert all(s.mem > 0 and s.mounts for s in samples)
    unavailable = [r.kv["source"] for r in caplog.records if hasattr(r, "kv")]
    assert sorted(unavailable) == ["disk_io", "processes", "temperatures"]


@linux_only
def test_an_unreadable_meminfo_leaves_memory_out_and_the_sample_still_comes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(edge_agent.sampler, "MEMINFO", str(tmp_path / "no-meminfo"))
    caplog.set_level(logging.DEBUG, logger="arete.agent.sampler")
    sampler = Sampler()
    samples = [sampler.sample(seq) for seq in (1, 2)]
    assert all((s.mem, s.mem_total, s.swap) == (0.0, 0, 0.0) and s.mounts for s in samples)
    unavailable = [r.kv["source"] for r in caplog.records if hasattr(r, "kv")]
    assert unavailable == ["memory"]


def test_one_sample_costs_under_four_tenths_of_a_millisecond_of_cpu() -> None:
    # About 130 us measured on the 2-core development VM (the slower readings every 10 s
    # and 60 s included); the limit leaves 3x for a loaded or slower machine. A regression
    # such as walking every process or re-listing mounts each second crosses it.
    # bench/agent_overhead.py measures the whole agent.
    # The best of three runs of 300 samples: CPU time still grows when other processes
    # share the cores (caches, frequency); one run in CI read 447 us beside the fault tier.
    clock = FakeClock()
    sampler = Sampler(monotonic=clock)
    rounds = 300
    runs = []
    for run in range(3):
        spent = 0.0
        for seq in range(run * rounds, (run + 1) * rounds):
            clock.now += 1.0  # a full window every call, as at 1 Hz
            start = time.thread_time()
            sampler.sample(seq)
            spent += time.thread_time() - start
        runs.append(spent / rounds)
    per_sample = min(runs)
    readings = ", ".join(f"{run * 1e6:.0f}" for run in runs)
    assert per_sample < 0.0004, f"{per_sample * 1e6:.0f} us of CPU per sample ({readings})"
