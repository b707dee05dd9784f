"""The row a stored sample becomes: one flat tuple, built on the ingest hot path.

Layout: ``(agent_id, seq, ts, epoch, *values)`` with one value per name in
:data:`FIELDS` (``None`` where the agent did not report it). A plain tuple, because the
maestro builds tens of thousands of these a second.
"""

from __future__ import annotations

from typing import Any, Final

from arete.payloads import Sample

FIELDS: Final = (
    "cpu",
    "mem",
    "swap",
    "disk",
    "load1",
    "net_rx_bps",
    "net_tx_bps",
    "disk_read_bps",
    "disk_write_bps",
    "procs",
    "gpu_util",
    "temp_max",
)
"""Numeric fields kept per sample (raw) and per minute (min/avg/max), in column order."""

FIELD_SET: Final = frozenset(FIELDS)
MAX_DETAIL_KEYS: Final = 2000  # far above any machine; a flood of names is cut here
HEAD: Final = ("agent", "seq", "ts", "epoch")
"""Names of the first four row items."""

SampleRow = tuple[Any, ...]


def to_row(agent_id: str, epoch: int, sample: Sample) -> SampleRow:
    """The stored row of one sample."""
    gpus = sample.gpu
    gpu_util = None
    if gpus:
        utils = [g.util for g in gpus if g.util is not None]
        gpu_util = max(utils) if utils else None
    temps = sample.temps
    return (
        agent_id,
        sample.seq,
        sample.ts,
        epoch,
        sample.cpu,
        sample.mem,
        sample.swap,
        sample.disk,
        sample.load[0] if sample.load is not None else None,
        sample.net_rx_bps,
        sample.net_tx_bps,
        sample.disk_read_bps,
        sample.disk_write_bps,
        sample.procs,
        gpu_util,
        max(temps.values()) if temps else None,
    )


def row_values(row: SampleRow) -> dict[str, Any]:
    """``{field: value}`` of a row, without the ``None`` ones."""
    return {name: value for name, value in zip(FIELDS, row[4:], strict=True) if value is not None}


def detail_values(sample: Sample) -> dict[str, float]:
    """The per-item readings of a sample as ``{key: value}`` (see :func:`detail_items`)."""
    return dict(detail_items(sample))


def detail_items(sample: Sample) -> list[tuple[str, float]]:
    """The per-item readings of ``sample`` as ``(key, value)`` pairs; only what it sent.

    ``cpu.<core>`` (percent), ``mount:<path>`` (percent used), ``mount_used:<path>`` and
    ``mount_total:<path>`` (bytes), ``temp:<sensor>`` (degrees C), ``gpu.<i>.util`` and
    ``gpu.<i>.mem`` (percent), ``gpu.<i>.temp`` (degrees C), ``gpu.<i>.power`` (W),
    ``uptime_s``, ``mem_used`` and ``mem_total`` (bytes), ``load5``, ``load15``,
    ``disk_read_iops`` and ``disk_write_iops``.
    """
    out: list[tuple[str, float]] = [
        ("uptime_s", sample.uptime_s),
        ("disk_read_iops", sample.disk_read_iops),
        ("disk_write_iops", sample.disk_write_iops),
    ]
    if sample.mem_total:
        out += [("mem_used", float(sample.mem_used)), ("mem_total", float(sample.mem_total))]
    if sample.load is not None:
        out += [("load5", sample.load[1]), ("load15", sample.load[2])]
    out += [(f"cpu.{core}", pct) for core, pct in enumerate(sample.cpus)]
    for mount in sample.mounts:
        out += [
            (f"mount:{mount.mount}", mount.pct),
            (f"mount_used:{mount.mount}", float(mount.used)),
            (f"mount_total:{mount.mount}", float(mount.total)),
        ]
    out += [(f"temp:{sensor}", celsius) for sensor, celsius in (sample.temps or {}).items()]
    for gpu in sample.gpu or []:
        if gpu.util is not None:
            out.append((f"gpu.{gpu.index}.util", gpu.util))
        if gpu.mem_used is not None and gpu.mem_total:
            out.append((f"gpu.{gpu.index}.mem", round(100.0 * gpu.mem_used / gpu.mem_total, 1)))
        if gpu.temp is not None:
            out.append((f"gpu.{gpu.index}.temp", gpu.temp))
        if gpu.power_w is not None:
            out.append((f"gpu.{gpu.index}.power", gpu.power_w))
    return out[:MAX_DETAIL_KEYS]


def detail_signature(sample: Sample) -> tuple[Any, ...]:
    """What decides the keys of :func:`detail_items` (their names and order), cheaply.

    Two samples with the same signature have the same keys: the store caches their ids
    by signature and packs :func:`detail_numbers` without building a name per value.
    """
    gpus = sample.gpu
    return (
        bool(sample.mem_total),
        sample.load is not None,
        len(sample.cpus),
        tuple(mount.mount for mount in sample.mounts),
        tuple(sample.temps) if sample.temps else (),
        tuple(
            (
                g.index,
                g.util is not None,
                g.mem_used is not None and bool(g.mem_total),
                g.temp is not None,
                g.power_w is not None,
            )
            for g in gpus
        )
        if gpus
        else (),
    )


def detail_numbers(sample: Sample) -> list[float]:
    """The values of :func:`detail_items`, in the same order, without the names."""
    out: list[float] = [sample.uptime_s, sample.disk_read_iops, sample.disk_write_iops]
    if sample.mem_total:
        out += (float(sample.mem_used), float(sample.mem_total))
    if sample.load is not None:
        out += sample.load[1:]
    out += sample.cpus
    for mount in sample.mounts:
        out += (mount.pct, float(mount.used), float(mount.total))
    if sample.temps:
        out += sample.temps.values()
    for gpu in sample.gpu or ():
        if gpu.util is not None:
            out.append(gpu.util)
        if gpu.mem_used is not None and gpu.mem_total:
            out.append(round(100.0 * gpu.mem_used / gpu.mem_total, 1))
        if gpu.temp is not None:
            out.append(gpu.temp)
        if gpu.power_w is not None:
            out.append(gpu.power_w)
    return out[:MAX_DETAIL_KEYS]
