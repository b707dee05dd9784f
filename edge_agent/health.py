"""``health.json``: this agent process's word that it works (docs/updates.md).

The host's updater keeps a new version only once that version wrote ``S/health.json``
after the switch (the "commit" of an update, as in Mender). The agent writes it once per
process, when every sign of a working agent has been seen: connected, its ``online``
status acknowledged by the broker, at least :data:`SAMPLES_NEEDED` samples acknowledged
by the broker and at least one heartbeat sent. Any version writes it; the file from an
earlier process is removed at start, so a file there always speaks for the running one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

HEALTH_FILE: Final = "health.json"
SAMPLES_NEEDED: Final = 3


class HealthReport(msgspec.Struct, kw_only=True, frozen=True):
    version: str
    pid: int
    started_at: float
    healthy_at: float


@dataclass(slots=True)
class HealthWatch:
    """Counts the signs of a working agent; pure (the agent feeds it, then writes)."""

    online_acked: bool = False
    samples_acked: int = 0
    heartbeats: int = 0
    connected: bool = False
    written: bool = field(default=False)

    def on_connected(self) -> None:
        self.connected = True

    def on_disconnected(self) -> None:
        # The acknowledgements already counted stay true: they proved the path works.
        self.connected = False

    def on_online_acked(self) -> None:
        self.online_acked = True

    def on_samples_acked(self, count: int) -> None:
        self.samples_acked += count

    def on_heartbeat(self) -> None:
        self.heartbeats += 1

    def due(self) -> bool:
        """Whether ``health.json`` should be written now (true once per process)."""
        return (
            not self.written
            and self.connected
            and self.online_acked
            and self.samples_acked >= SAMPLES_NEEDED
            and self.heartbeats >= 1
        )


def health_path(state_dir: Path) -> Path:
    return state_dir / HEALTH_FILE


def remove_health(state_dir: Path) -> None:
    """At start: the file of an earlier process must not speak for this one."""
    with contextlib.suppress(FileNotFoundError):
        health_path(state_dir).unlink()


def write_health(state_dir: Path, report: HealthReport) -> None:
    """Write ``health.json`` atomically (temporary file, fsync, rename). Raises OSError."""
    write_atomic(health_path(state_dir), msgspec.json.encode(report) + b"\n")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
