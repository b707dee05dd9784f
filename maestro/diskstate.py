"""The maestro's own data disk: is it full, and saying so once a minute, not twice a second.

* :func:`is_disk_full` tells a "no space" error (SQLite's ``SQLITE_FULL``, ``ENOSPC``)
  from the others.
* :class:`Throttle` lets a failing writer log its trouble once per period (with the
  count of repeats it kept quiet about) instead of once per attempt.
* :func:`judge` is the pure verdict: full while a writer fails for lack of space or
  fewer than ``min_free_bytes`` are left; room again once neither holds.
* :class:`DiskMonitor` is the I/O shell: every ``probe_s`` it reads the free space of
  the data dir and asks the writers (alert changes, notification marks, the registry,
  the sample writer) whether they are failing, then tells its listeners (the alert
  service raises ``maestro_disk_full``; the presence payload and the metrics show it)
  and logs one line when the disk fills, one a minute while it stays full, one when
  room comes back.

Nothing here writes to the disk: telling the operator must work while it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("arete.maestro.disk")

LOG_EVERY_S: Final = 60.0
_FULL_TEXTS: Final = ("disk is full", "no space left", "database or disk is full")


class DiskSettings(BaseModel):
    """``[disk]`` of the maestro's settings (``ARETE_MAESTRO_DISK__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_free_bytes: int = Field(
        1024 * 1024,
        ge=0,
        le=1 << 40,
        description="Below this much free space the data disk counts as full.",
    )
    probe_s: float = Field(1.0, gt=0, le=60, description="How often the free space is read.")
    log_every_s: float = Field(
        LOG_EVERY_S, ge=1, le=3600, description="How often a full disk is logged again."
    )
    reserve_bytes: int = Field(
        1024 * 1024,
        ge=0,
        le=1 << 30,
        description="Space kept in a reserve file beside the database, given up when the "
        "maestro must start on a full disk (SQLite needs room to open); 0: no reserve.",
    )


def is_disk_full(error: BaseException | str) -> bool:
    """Whether ``error`` says the disk has no room (as opposed to any other failure)."""
    if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == 13:
        return True  # SQLITE_FULL
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _FULL_TEXTS)


class Throttle:
    """``ready(now)`` is True at most once per ``every_s``; it counts the calls in between.

    A writer that fails on each retry logs ``if throttle.ready(now)`` and reports
    ``throttle.suppressed`` (how many repeats it kept quiet about since its last line).
    """

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._last: float | None = None
        self.suppressed = 0
        self._quiet = 0

    def ready(self, now: float) -> bool:
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            self.suppressed, self._quiet = self._quiet, 0
            return True
        self._quiet += 1
        return False

    def reset(self) -> None:
        """The trouble is over: the next failure is news again."""
        self._last = None
        self._quiet = 0
        self.suppressed = 0


@dataclass(frozen=True, slots=True)
class DiskReport:
    """One look at the data disk."""

    full: bool
    free_bytes: int | None  # None: the free space could not be read
    total_bytes: int | None
    failing: Mapping[str, str] = field(default_factory=dict)  # writer -> its "no space" error
    since: float | None = None  # unix seconds the disk became full

    def to_json(self) -> dict[str, Any]:
        return {
            "full": self.full,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "failing": dict(self.failing),
            "since": self.since,
        }


def judge(
    previous: DiskReport | None,
    *,
    free_bytes: int | None,
    total_bytes: int | None,
    errors: Mapping[str, str],
    min_free_bytes: int,
    now: float,
) -> DiskReport:
    """The verdict after one probe: full while a writer fails for lack of space or
    fewer than ``min_free_bytes`` are free; ``since`` is kept while it stays full."""
    failing = {name: error for name, error in errors.items() if is_disk_full(error)}
    low = free_bytes is not None and free_bytes < min_free_bytes
    full = bool(failing) or low
    since = None
    if full:
        since = previous.since if previous is not None and previous.full else now
    return DiskReport(full, free_bytes, total_bytes, failing, since)


RESERVE_NAME: Final = ".arete-disk-reserve"


def reserve_path(directory: Path) -> Path:
    return directory / RESERVE_NAME


def ensure_reserve(directory: Path, size: int) -> bool:
    """Create the reserve file (``size`` bytes) if it is missing and the disk has room
    for it several times over; True if it exists afterwards. Never raises."""
    if size <= 0:
        return False
    path = reserve_path(directory)
    try:
        if path.exists():
            return True
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < 4 * size:
            return False
        with path.open("wb") as out:
            chunk = b"\0" * min(size, 65536)
            left = size
            while left > 0:
                left -= out.write(chunk[:left])
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    return True


def release_reserve(directory: Path) -> bool:
    """Delete the reserve file; True if there was one."""
    try:
        reserve_path(directory).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.error("cannot delete the disk reserve", extra={"kv": {"error": str(exc)}})
        return False
    return True


Source = Callable[[], str | None]  # a writer's current error (None: it is not failing)
Listener = Callable[[DiskReport, float], None]


class DiskMonitor:
    """Watches the data dir's disk; :meth:`run` until cancelled.

    ``sources`` name each writer and give its current error; ``listeners`` hear every
    change of the verdict (full or not), and once at the first probe.
    """

    def __init__(
        self,
        path: Path,
        settings: DiskSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.settings = settings or DiskSettings()
        self._clock = clock
        self.sources: dict[str, Source] = {}
        self.listeners: list[Listener] = []
        self.report = DiskReport(False, None, None)
        self.changes = 0  # times the verdict changed (for tests and metrics)
        self._probed = False
        self._throttle = Throttle(self.settings.log_every_s)
        self._reserve_missing = self.settings.reserve_bytes > 0

    @property
    def full(self) -> bool:
        return self.report.full

    def free_space(self) -> tuple[int | None, int | None]:
        """Free and total bytes of the data dir's file system (None, None if unreadable)."""
        path = self.path
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            st = os.statvfs(path)
        except OSError:
            return None, None
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def probe(self, now: float | None = None) -> DiskReport:
        """Look once; tell the listeners if the verdict changed; log as due."""
        now = self._clock() if now is None else now
        free, total = self.free_space()
        errors: dict[str, str] = {}
        for name, source in list(self.sources.items()):
            try:
                error = source()
            except Exception as exc:  # noqa: BLE001 - a broken source is a failing one
                error = f"cannot ask {name}: {exc}"
            if error:
                errors[name] = error
        before = self.report
        self.report = report = judge(
            before,
            free_bytes=free,
            total_bytes=total,
            errors=errors,
            min_free_bytes=self.settings.min_free_bytes,
            now=now,
        )
        if not report.full and self._reserve_missing:
            self._reserve_missing = not ensure_reserve(self.path, self.settings.reserve_bytes)
        changed = report.full != before.full or not self._probed
        self._probed = True
        self._log(before, report, now)
        if changed:
            if report.full != before.full:
                self.changes += 1
            for listener in list(self.listeners):
                try:
                    listener(report, now)
                except Exception:  # one listener's bug must not silence the others
                    log.exception("a disk state listener failed")
        return report

    def _log(self, before: DiskReport, report: DiskReport, now: float) -> None:
        kv = {
            "path": str(self.path),
            "free_bytes": report.free_bytes,
            "min_free_bytes": self.settings.min_free_bytes,
            "failing": ",".join(sorted(report.failing)) or None,
        }
        if report.full:
            if self._throttle.ready(now):
                since = report.since if report.since is not None else now
                log.error(
                    "maestro data disk is full: decided changes are kept in memory and "
                    "stored when room comes back",
                    extra={"kv": {**kv, "full_for_s": round(now - since, 1)}},
                )
        elif before.full:
            self._throttle.reset()
            log.warning("maestro data disk has room again", extra={"kv": kv})

    async def run(self) -> None:
        while True:
            try:
                self.probe()
            except Exception:  # a probe's bug must not stop the watch
                log.exception("disk probe failed")
            await asyncio.sleep(self.settings.probe_s)
