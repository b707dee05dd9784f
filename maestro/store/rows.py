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
