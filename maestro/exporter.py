"""The fleet's metrics for Prometheus: each agent's newest sample, as series.

What the series are: :func:`fleet_families` builds them as prometheus_client families
(the reference, kept for tests and as bench/exporter.py's baseline); the maestro serves
the same series rendered as text by :mod:`maestro.fleet_text` (an order of magnitude
cheaper at thousands of agents), from :func:`views_of` copies. Every series carries
``agent`` and the agent's own labels (made valid Prometheus label names). Where a value
means what a node_exporter metric means, it has node_exporter's name (``node_load1``,
``node_memory_MemTotal_bytes``, ``node_filesystem_size_bytes``,
``node_boot_time_seconds``); the rest are ``arete_agent_*`` (the agent sends rates and
percentages, not node_exporter's counters).

Only agents that are online or late expose their sample; an agent that is offline keeps
``arete_agent_up 0`` alone, so Prometheus marks its other series stale instead of
repeating the last value. See docs/prometheus.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.core import Metric

from arete.payloads import Sample

LIVE_STATES: Final = frozenset({"online", "late"})
RESERVED: Final = frozenset(
    {
        "agent",
        "instance",
        "job",
        "mountpoint",
        "cpu",
        "sensor",
        "gpu",
        "name",
        "host",
        "version",
        "state",
    }
)
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the exporter needs of one agent."""

    agent_id: str
    state: str
    labels: Mapping[str, str]
    host: str | None = None
    version: str | None = None
    sample: Sample | None = None


def label_name(key: str) -> str:
    """A valid Prometheus label name for an agent label (``site-a.b`` -> ``site_a_b``).

    Names that would clash with the exporter's own (``agent``, ``job``...), or that start
    with a digit or ``__`` (reserved by Prometheus), get a ``label_`` prefix.
    """
    name = _INVALID.sub("_", key) or "_"
    if name[0].isdigit() or name.startswith("__") or name in RESERVED:
        name = f"label_{name}"
    return name


def agent_labels(view: AgentView) -> dict[str, str]:
    out = {label_name(key): value for key, value in sorted(view.labels.items())}
    out["agent"] = view.agent_id
    return out


class _Families:
    """Families by name, created on first use (keeps the output grouped per name)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def add(
        self, name: str, doc: str, kind: str, labels: dict[str, str], value: float | None
    ) -> None:
        if value is None:
            return
        family = self.by_name.get(name)
        if family is None:
            family = self.by_name[name] = Metric(name, doc, kind)
        family.add_sample(name, labels, float(value))


def fleet_families(views: list[AgentView]) -> list[Metric]:
    """Every family of the fleet's metrics, agents in id order."""
    out = _Families()
    for view in sorted(views, key=lambda v: v.agent_id):
        base = agent_labels(view)
        live = view.state in LIVE_STATES
        out.add(
            "arete_agent_up",
            "1 while the agent is online or late, else 0 (the maestro's liveness)",
            "gauge",
            base,
            1.0 if live else 0.0,
        )
        info = base | {"host": view.host or "", "version": view.version or "", "state": view.state}
        out.add("arete_agent_info", "The agent's host, version and liveness", "gauge", info, 1.0)
        if live and view.sample is not None:
            _sample(out, base, view.sample)
    return list(out.by_name.values())


def _sample(out: _Families, base: dict[str, str], s: Sample) -> None:
    gauge = "gauge"
    out.add("arete_agent_cpu_percent", "CPU busy, all cores (%)", gauge, base, s.cpu)
    for index, value in enumerate(s.cpus):
        core = base | {"cpu": str(index)}
        out.add("arete_agent_cpu_core_percent", "CPU busy per core (%)", gauge, core, value)
    if s.load is not None:
        for name, value in zip(("node_load1", "node_load5", "node_load15"), s.load, strict=True):
            out.add(name, f"Load average ({name[9:]} min)", gauge, base, value)
    out.add("arete_agent_memory_used_percent", "Memory in use (%)", gauge, base, s.mem)
    if s.mem_total:
        out.add("node_memory_MemTotal_bytes", "Memory size (bytes)", gauge, base, s.mem_total)
        out.add("arete_agent_memory_used_bytes", "Memory in use (bytes)", gauge, base, s.mem_used)
    out.add("arete_agent_swap_used_percent", "Swap in use (%)", gauge, base, s.swap)
    out.add("arete_agent_disk_used_percent", "Fullest mount, in use (%)", gauge, base, s.disk)
    for mount in s.mounts:
        at = base | {"mountpoint": mount.mount}
        out.add("node_filesystem_size_bytes", "Filesystem size (bytes)", gauge, at, mount.total)
        out.add(
            "arete_agent_filesystem_used_bytes", "Filesystem in use (bytes)", gauge, at, mount.used
        )
        out.add(
            "arete_agent_filesystem_used_percent", "Filesystem in use (%)", gauge, at, mount.pct
        )
    rates = (
        ("arete_agent_network_receive_bytes_per_second", "Network received", s.net_rx_bps),
        ("arete_agent_network_transmit_bytes_per_second", "Network sent", s.net_tx_bps),
        ("arete_agent_disk_read_bytes_per_second", "Disk read", s.disk_read_bps),
        ("arete_agent_disk_written_bytes_per_second", "Disk written", s.disk_write_bps),
    )
    for name, doc, value in rates:
        out.add(name, f"{doc} (bytes/s, all interfaces or disks)", gauge, base, value)
    out.add("arete_agent_disk_reads_per_second", "Disk reads (IO/s)", gauge, base, s.disk_read_iops)
    out.add(
        "arete_agent_disk_writes_per_second", "Disk writes (IO/s)", gauge, base, s.disk_write_iops
    )
    out.add("arete_agent_processes", "Processes", gauge, base, s.procs)
    if s.uptime_s:
        boot = round(s.ts - s.uptime_s)
        out.add("node_boot_time_seconds", "Boot time (unix seconds)", gauge, base, boot)
    out.add(
        "arete_agent_sample_timestamp_seconds",
        "When the newest sample was taken (the agent's clock, unix seconds)",
        gauge,
        base,
        s.ts,
    )
    for sensor, celsius in sorted((s.temps or {}).items()):
        at = base | {"sensor": sensor}
        out.add("arete_agent_temperature_celsius", "Temperature by sensor", gauge, at, celsius)
    for gpu in s.gpu or []:
        at = base | {"gpu": str(gpu.index), "name": gpu.name}
        out.add("arete_agent_gpu_utilization_percent", "GPU busy (%)", gauge, at, gpu.util)
        out.add("arete_agent_gpu_memory_used_bytes", "GPU memory in use", gauge, at, gpu.mem_used)
        out.add("arete_agent_gpu_memory_total_bytes", "GPU memory size", gauge, at, gpu.mem_total)
        out.add("arete_agent_gpu_temperature_celsius", "GPU temperature", gauge, at, gpu.temp)
        out.add("arete_agent_gpu_power_watts", "GPU power draw", gauge, at, gpu.power_w)


def views_of(maestro: Any) -> list[AgentView]:
    """The agents of a running maestro (called on the scrape thread: copies first)."""
    registry = maestro.registry
    samples: dict[str, Sample] = dict(maestro.ingest.latest_sample)
    statuses = dict(registry.statuses)
    out = []
    for agent_id, live in list(registry.states.items()):
        status = statuses.get(agent_id)
        out.append(
            AgentView(
                agent_id=agent_id,
                state=str(live.state),
                labels=dict(status.labels) if status is not None else {},
                host=status.host if status is not None else None,
                version=status.version if status is not None else None,
                sample=samples.get(agent_id),
            )
        )
    return out
