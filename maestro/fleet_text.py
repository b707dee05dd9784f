"""The fleet's series rendered straight to the Prometheus text format.

Same series, labels and values as :func:`maestro.exporter.fleet_families` (a test holds
the two to each other), without a ``Metric``/``Sample`` object per series: each agent's
labels are escaped once and every series is one string. 10,000 agents render in a small
fraction of what prometheus_client's ``generate_latest`` needs for the same families
(bench/exporter.py), which matters because a render holds the GIL the MQTT thread needs.

:class:`FleetText` is the rendered fleet, one text chunk per family (HELP and TYPE once,
every series of that name after it, as the format requires), so a scrape that asks for a
few names (``/metrics?name[]=...``) joins only theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final

from arete.payloads import Sample
from maestro.exporter import LIVE_STATES, AgentView, agent_labels

# Every family in output order: name -> HELP text (all are gauges).
FAMILIES: Final[dict[str, str]] = {
    "arete_agent_up": "1 while the agent is online or late, else 0 (the maestro's liveness)",
    "arete_agent_info": "The agent's host, version and liveness",
    "arete_agent_cpu_percent": "CPU busy, all cores (%)",
    "arete_agent_cpu_core_percent": "CPU busy per core (%)",
    "node_load1": "Load average (1 min)",
    "node_load5": "Load average (5 min)",
    "node_load15": "Load average (15 min)",
    "arete_agent_memory_used_percent": "Memory in use (%)",
    "node_memory_MemTotal_bytes": "Memory size (bytes)",
    "arete_agent_memory_used_bytes": "Memory in use (bytes)",
    "arete_agent_swap_used_percent": "Swap in use (%)",
    "arete_agent_disk_used_percent": "Fullest mount, in use (%)",
    "node_filesystem_size_bytes": "Filesystem size (bytes)",
    "arete_agent_filesystem_used_bytes": "Filesystem in use (bytes)",
    "arete_agent_filesystem_used_percent": "Filesystem in use (%)",
    "arete_agent_network_receive_bytes_per_second": (
        "Network received (bytes/s, all interfaces or disks)"
    ),
    "arete_agent_network_transmit_bytes_per_second": (
        "Network sent (bytes/s, all interfaces or disks)"
    ),
    "arete_agent_disk_read_bytes_per_second": "Disk read (bytes/s, all interfaces or disks)",
    "arete_agent_disk_written_bytes_per_second": (
        "Disk written (bytes/s, all interfaces or disks)"
    ),
    "arete_agent_disk_reads_per_second": "Disk reads (IO/s)",
    "arete_agent_disk_writes_per_second": "Disk writes (IO/s)",
    "arete_agent_processes": "Processes",
    "node_boot_time_seconds": "Boot time (unix seconds)",
    "arete_agent_sample_timestamp_seconds": (
        "When the newest sample was taken (the agent's clock, unix seconds)"
    ),
    "arete_agent_temperature_celsius": "Temperature by sensor",
    "arete_agent_gpu_utilization_percent": "GPU busy (%)",
    "arete_agent_gpu_memory_used_bytes": "GPU memory in use",
    "arete_agent_gpu_memory_total_bytes": "GPU memory size",
    "arete_agent_gpu_temperature_celsius": "GPU temperature",
    "arete_agent_gpu_power_watts": "GPU power draw",
}
FLEET_NAMES: Final = frozenset(FAMILIES)


def escape(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float) -> str:
    """A sample value (Go's spellings for the infinities and NaN)."""
    text = repr(float(value))
    if text[-1] in "fn":  # inf, -inf, nan
        return {"inf": "+Inf", "-inf": "-Inf"}.get(text, "NaN")
    return text


@dataclass(frozen=True, slots=True)
class FleetText:
    """The fleet rendered once: a chunk of text per family that has series."""

    chunks: dict[str, str]
    body: bytes  # every chunk, UTF-8: what a full scrape sends

    def text(self, names: Collection[str] | None = None) -> str:
        """Every family, or only those named (``name[]``)."""
        if names is None:
            return "".join(self.chunks.values())
        return "".join(chunk for name, chunk in self.chunks.items() if name in names)


class FleetCache:
    """The rendered fleet, reused while younger than ``ttl_s`` (0: render every time).

    ``views`` copies what it needs from the maestro (dict copies, quick) and the render
    works on the copies. The lock is the scrapes' own (the ingest never takes it): a
    scrape arriving during a render waits for that render instead of making another.
    """

    def __init__(
        self,
        views: Callable[[], Iterable[AgentView]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._views = views
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._text: FleetText | None = None
        self._at = 0.0
        self.renders = 0
        self.last_render_s = 0.0  # CPU seconds of the newest render (the GIL held as long)

    def get(self) -> FleetText:
        with self._lock:
            now = self._clock()
            fresh = self._ttl_s > 0 and now - self._at < self._ttl_s
            if self._text is None or not fresh:
                began = time.thread_time()
                self._text = render_fleet(self._views())
                self.last_render_s = time.thread_time() - began
                self._at = now
                self.renders += 1
            return self._text


def render_fleet(views: Iterable[AgentView]) -> FleetText:
    """The fleet's series, agents in id order (see :func:`maestro.exporter.fleet_families`)."""
    lines: dict[str, list[str]] = {name: [] for name in FAMILIES}
    for view in sorted(views, key=lambda v: v.agent_id):
        labels = agent_labels(view)
        base = ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())
        live = view.state in LIVE_STATES
        lines["arete_agent_up"].append(f"arete_agent_up{{{base}}} {'1.0' if live else '0.0'}\n")
        info = (
            f'{base},host="{escape(view.host or "")}",version="{escape(view.version or "")}"'
            f',state="{escape(view.state)}"'
        )
        lines["arete_agent_info"].append(f"arete_agent_info{{{info}}} 1.0\n")
        if live and view.sample is not None:
            _sample(lines, base, view.sample)
    chunks = {}
    for name, found in lines.items():
        if found:
            head = f"# HELP {name} {FAMILIES[name]}\n# TYPE {name} gauge\n"
            chunks[name] = head + "".join(found)
    return FleetText(chunks, "".join(chunks.values()).encode())


def _sample(lines: dict[str, list[str]], base: str, s: Sample) -> None:
    def put(name: str, value: float | None, extra: str = "") -> None:
        if value is not None:
            lines[name].append(f"{name}{{{base}{extra}}} {number(value)}\n")

    put("arete_agent_cpu_percent", s.cpu)
    for index, value in enumerate(s.cpus):
        put("arete_agent_cpu_core_percent", value, f',cpu="{index}"')
    if s.load is not None:
        put("node_load1", s.load[0])
        put("node_load5", s.load[1])
        put("node_load15", s.load[2])
    put("arete_agent_memory_used_percent", s.mem)
    if s.mem_total:
        put("node_memory_MemTotal_bytes", s.mem_total)
        put("arete_agent_memory_used_bytes", s.mem_used)
    put("arete_agent_swap_used_percent", s.swap)
    put("arete_agent_disk_used_percent", s.disk)
    for mount in s.mounts:
        at = f',mountpoint="{escape(mount.mount)}"'
        put("node_filesystem_size_bytes", mount.total, at)
        put("arete_agent_filesystem_used_bytes", mount.used, at)
        put("arete_agent_filesystem_used_percent", mount.pct, at)
    put("arete_agent_network_receive_bytes_per_second", s.net_rx_bps)
    put("arete_agent_network_transmit_bytes_per_second", s.net_tx_bps)
    put("arete_agent_disk_read_bytes_per_second", s.disk_read_bps)
    put("arete_agent_disk_written_bytes_per_second", s.disk_write_bps)
    put("arete_agent_disk_reads_per_second", s.disk_read_iops)
    put("arete_agent_disk_writes_per_second", s.disk_write_iops)
    put("arete_agent_processes", s.procs)
    if s.uptime_s:
        put("node_boot_time_seconds", round(s.ts - s.uptime_s))
    put("arete_agent_sample_timestamp_seconds", s.ts)
    for sensor, celsius in sorted((s.temps or {}).items()):
        put("arete_agent_temperature_celsius", celsius, f',sensor="{escape(sensor)}"')
    for gpu in s.gpu or []:
        at = f',gpu="{gpu.index}",name="{escape(gpu.name)}"'
        put("arete_agent_gpu_utilization_percent", gpu.util, at)
        put("arete_agent_gpu_memory_used_bytes", gpu.mem_used, at)
        put("arete_agent_gpu_memory_total_bytes", gpu.mem_total, at)
        put("arete_agent_gpu_temperature_celsius", gpu.temp, at)
        put("arete_agent_gpu_power_watts", gpu.power_w, at)
