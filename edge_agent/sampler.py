"""One metrics sample of this machine, cheap enough to take every second.

The agent's budget is 0.25 % of one core at 1 Hz, so a sample reads only cheap kernel
counters each time (``/proc/stat``, ``/proc/meminfo``, ``/proc/diskstats``,
``/proc/net/dev``, one ``statvfs`` per mount) and refreshes the costly ones on a slower
clock: the mount list and which disks and interfaces are hardware every minute,
temperatures and the process count every ten seconds. Nothing walks the details of every
process. ``python bench/agent_overhead.py`` measures the whole agent.

The arithmetic (CPU busy share, counter rates, memory, which mounts, disks and
interfaces count) is pure functions in :mod:`edge_agent.sampler_math`, tested with plain
inputs; :class:`Sampler` only feeds them psutil and ``/proc`` readings. A source that
fails (permission, missing ``/proc`` file, unsupported platform) is logged once at debug
level and left out of the sample: it never costs the rest of the sample.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final, NamedTuple, TypeVar

import psutil

from arete.payloads import Mount, Sample
from edge_agent.gpu import GpuProbe
from edge_agent.sampler_math import (
    MAX_KEY,
    Counters,
    CpuFields,
    MemoryUse,
    Partition,
    TempReading,
    counted_disks,
    counted_nics,
    cpu_percents,
    cpu_split,
    flatten_temps,
    fullest,
    memory_use,
    parse_meminfo,
    percent,
    select_mounts,
    summed_rates,
    swap_percent,
)

log = logging.getLogger("arete.agent.sampler")

# Listing partitions parses /proc/self/mounts, and finding the hardware disks and NICs
# stats a /sys link per device: not every second.
MOUNTS_EVERY_S: Final = 60.0
# Sensors walk /sys/class/hwmon (one file per reading); counting processes lists /proc.
SLOW_EVERY_S: Final = 10.0
MIN_WINDOW_S: Final = 0.25  # a sample closer than this to the last one reuses its CPU and rates
MEMINFO: Final = "/proc/meminfo"

_LINUX: Final = sys.platform.startswith("linux")
_T = TypeVar("_T")
_DISK_FIELDS: Final = 4  # read bytes, write bytes, read ops, write ops
_NET_FIELDS: Final = 2  # received bytes, sent bytes


class _Window(NamedTuple):
    """Counter readings at the start of a rate window, and the values computed over it."""

    at: float  # monotonic seconds
    cpus: list[tuple[float, float]]
    disks: Counters
    nics: Counters
    cpu_pct: list[float]
    disk_rates: list[float]
    net_rates: list[float]


class Sampler:
    """Takes :class:`~arete.payloads.Sample` readings; safe to call from any thread.

    CPU and rates are over the time since the previous call (the first call measures from
    construction). Calls closer together than :data:`MIN_WINDOW_S` (a ``metrics`` command
    right after a scheduled sample) repeat the last CPU and rates instead of computing
    them over a few milliseconds.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        gpu: GpuProbe | None = None,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._gpu = gpu if gpu is not None else GpuProbe()
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._mountpoints: list[str] = []
        self._whole_disks: frozenset[str] | None = None
        self._hardware_disks: frozenset[str] = frozenset()
        self._hardware_nics: frozenset[str] = frozenset()
        self._boot_time: float | None = None
        self._mounts_at = -math.inf
        self._temps: dict[str, float] | None = None
        self._procs: int | None = None
        self._slow_at = -math.inf
        self._cpu_fields: CpuFields | None = None
        now = monotonic()
        self._refresh_mounts(now)
        cpus = self._read_cpus()
        self._window = _Window(
            at=now,
            cpus=cpus,
            disks=self._read_disks(),
            nics=self._read_nics(),
            cpu_pct=[0.0] * len(cpus),
            disk_rates=[0.0] * _DISK_FIELDS,
            net_rates=[0.0] * _NET_FIELDS,
        )

    def sample(self, seq: int) -> Sample:
        """Read the machine now. Blocking (a fraction of a millisecond); call from a thread."""
        with self._lock:
            ts = self._clock()
            now = self._monotonic()
            if now - self._mounts_at >= MOUNTS_EVERY_S:
                self._refresh_mounts(now)
            if now - self._slow_at >= SLOW_EVERY_S:
                self._slow_at = now
                self._temps = self._try("temperatures", _read_temps)
                self._procs = self._try("processes", lambda: len(psutil.pids()))
            window = self._advance(now)
            return self._build(seq, ts, window)

    def close(self) -> None:
        """Release NVML (when it was started)."""
        self._gpu.close()

    # -- reading ---------------------------------------------------------------------------
    def _build(self, seq: int, ts: float, window: _Window) -> Sample:
        cpus = window.cpu_pct
        memory, swap = self._read_memory()
        load = self._try("load", psutil.getloadavg)
        mounts = self._read_mounts()
        disk, net = window.disk_rates, window.net_rates
        return Sample(
            ts=ts,
            seq=seq,
            cpu=percent(sum(cpus) / len(cpus)) if cpus else 0.0,
            cpus=cpus,
            load=None
            if load is None
            else (round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            mem=0.0 if memory is None else percent(memory.pct),
            mem_used=0 if memory is None else max(0, memory.used),
            mem_total=0 if memory is None else max(0, memory.total),
            swap=0.0 if swap is None else percent(swap),
            disk=fullest(mounts),
            mounts=mounts,
            disk_read_bps=round(disk[0], 1),
            disk_write_bps=round(disk[1], 1),
            disk_read_iops=round(disk[2], 1),
            disk_write_iops=round(disk[3], 1),
            net_rx_bps=round(net[0], 1),
            net_tx_bps=round(net[1], 1),
            uptime_s=0.0 if self._boot_time is None else round(max(0.0, ts - self._boot_time), 1),
            procs=0 if self._procs is None else self._procs,
            temps=self._temps,
            gpu=self._try("gpu", self._gpu.read),
        )

    def _advance(self, now: float) -> _Window:
        """Close the current rate window if it is long enough, and open the next one."""
        last = self._window
        elapsed = now - last.at
        if elapsed < MIN_WINDOW_S:
            return last
        cpus, disks, nics = self._read_cpus(), self._read_disks(), self._read_nics()
        self._window = _Window(
            at=now,
            cpus=cpus,
            disks=disks,
            nics=nics,
            cpu_pct=cpu_percents(last.cpus, cpus, last.cpu_pct),
            disk_rates=summed_rates(last.disks, disks, elapsed, _DISK_FIELDS),
            net_rates=summed_rates(last.nics, nics, elapsed, _NET_FIELDS),
        )
        return self._window

    def _read_cpus(self) -> list[tuple[float, float]]:
        times = self._try("cpu", lambda: psutil.cpu_times(percpu=True))
        if not times:
            return []
        fields = self._cpu_fields
        if fields is None:
            fields = self._cpu_fields = CpuFields.of(type(times[0])._fields)
        return [cpu_split(core, fields) for core in times]

    def _read_memory(self) -> tuple[MemoryUse | None, float | None]:
        """Memory use and swap percent; on Linux from one read of ``/proc/meminfo``.

        psutil's ``swap_memory`` would also read ``/proc/vmstat`` for page counts that a
        sample does not carry.
        """
        if not _LINUX:
            return self._try("memory", _psutil_memory), self._try("swap", _psutil_swap)
        meminfo = self._try("memory", _read_meminfo)
        if meminfo is None:
            return None, None
        memory = memory_use(meminfo)
        if memory is None:  # an old kernel without MemAvailable: psutil estimates it
            memory = self._try("memory", _psutil_memory)
        return memory, swap_percent(meminfo)

    # Raw counters (``nowrap=False``): psutil's unwrapping costs about a tenth of a sample,
    # and for a one-second rate it is no better than rate()'s "went backwards: 0".
    def _read_disks(self) -> Counters:
        whole, hardware = self._whole_disks, self._hardware_disks

        def read() -> Counters:
            if whole is None:  # not Linux, or no /sys/block: psutil's own total
                total = psutil.disk_io_counters(perdisk=False, nowrap=False)
                return {} if total is None else {"total": _disk_fields(total)}
            per_disk = psutil.disk_io_counters(perdisk=True, nowrap=False)
            return {
                name: _disk_fields(per_disk[name])
                for name in counted_disks(per_disk, whole, hardware)
            }

        return self._try("disk_io", read) or {}

    def _read_nics(self) -> Counters:
        hardware = self._hardware_nics

        def read() -> Counters:
            nics = psutil.net_io_counters(pernic=True, nowrap=False)
            return {
                name: (nics[name].bytes_recv, nics[name].bytes_sent)
                for name in counted_nics(nics, hardware)
            }

        return self._try("net_io", read) or {}

    def _read_mounts(self) -> list[Mount]:
        mounts = []
        for point in self._mountpoints:
            usage = self._try(f"disk_usage:{point}", partial(psutil.disk_usage, point))
            if usage is not None and usage.total > 0:
                mounts.append(
                    Mount(point[:MAX_KEY], usage.total, max(0, usage.used), percent(usage.percent))
                )
        return mounts

    def _refresh_mounts(self, now: float) -> None:
        self._mounts_at = now
        partitions = self._try("partitions", lambda: psutil.disk_partitions(all=False))
        if partitions is not None:
            self._mountpoints = select_mounts(
                Partition(p.device, p.mountpoint, p.fstype, p.opts) for p in partitions
            )
        if _LINUX:
            block = self._try("block_devices", partial(_sysfs_entries, "/sys/block"))
            self._whole_disks = None if block is None else block[0]
            self._hardware_disks = frozenset() if block is None else block[1]
            nics = self._try("interfaces", partial(_sysfs_entries, "/sys/class/net"))
            self._hardware_nics = frozenset() if nics is None else nics[1]
        self._boot_time = self._try("boot_time", psutil.boot_time)

    def _try(self, source: str, read: Callable[[], _T]) -> _T | None:
        """``read()``, or ``None`` when that source fails (logged once per source)."""
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - one failing source must not cost the sample
            if source not in self._failed:
                self._failed.add(source)
                log.debug(
                    "metric source unavailable",
                    extra={"kv": {"source": source, "error": repr(exc)}},
                )
            return None


def _disk_fields(io: Any) -> tuple[int, int, int, int]:
    return (io.read_bytes, io.write_bytes, io.read_count, io.write_count)


def _sysfs_entries(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """Every entry of a sysfs directory, and those with a ``device`` link (hardware)."""
    names = os.listdir(directory)
    return frozenset(names), frozenset(
        name for name in names if os.path.exists(f"{directory}/{name}/device")
    )


def _read_meminfo() -> dict[str, int]:
    with open(MEMINFO, encoding="ascii") as file:
        return parse_meminfo(file.read())


def _psutil_memory() -> MemoryUse:
    memory = psutil.virtual_memory()
    return MemoryUse(memory.total, memory.used, memory.percent)


def _psutil_swap() -> float:
    return float(psutil.swap_memory().percent)


def _read_temps() -> dict[str, float] | None:
    sensors = getattr(psutil, "sensors_temperatures", None)  # absent on Windows
    if sensors is None:
        return None
    readings = sensors()
    return flatten_temps(
        {chip: [TempReading(t.label, t.current) for t in temps] for chip, temps in readings.items()}
    )
