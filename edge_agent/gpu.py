"""NVIDIA GPU readings through nvidia-ml-py (``pynvml``), loaded only when a GPU can exist.

No driver, no library or no device means no GPU reporting: :meth:`GpuProbe.read` returns
``None`` and the sample omits ``gpu``. That is the normal case on most machines, so it is
logged at debug level (once per reason) and never raised.

A driver can load after the agent started (installed, or a module loaded late at boot),
and a GPU can stop answering (fallen off the bus, driver reloaded). So an unavailable
GPU is looked for again every :data:`RETRY_S`, and after :data:`MAX_FAILED_READINGS`
readings in a row in which no device answered, NVML is shut down and started afresh on
that same clock. A device that stops answering while others still do is left out of the
readings, so a working GPU is never switched off. Between retries a reading costs one
comparison.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from arete.payloads import Gpu

log = logging.getLogger("arete.agent.gpu")

# Loaded by the NVIDIA kernel driver. Without it nvmlInit fails anyway, and checking first
# spares the agent the ~3 MiB that importing pynvml costs.
_LINUX_DRIVER = Path("/proc/driver/nvidia")
_MAX_NAME = 256
RETRY_S: Final = 300.0  # how long GPU reporting stays off before NVML is tried again
MAX_FAILED_READINGS: Final = 5  # readings in a row with no device answering, then give up


def load_nvml() -> Any:
    """Import and initialise pynvml; raise when there is no usable driver or library."""
    if sys.platform.startswith("linux") and not _LINUX_DRIVER.exists():
        raise RuntimeError(f"no NVIDIA driver loaded ({_LINUX_DRIVER} is absent)")
    import pynvml

    pynvml.nvmlInit()
    return pynvml


class GpuProbe:
    """Reads every NVIDIA device; starts NVML on the first :meth:`read`, and again later
    when it was unavailable or stopped answering."""

    def __init__(
        self,
        *,
        load: Callable[[], Any] = load_nvml,
        monotonic: Callable[[], float] = time.monotonic,
        retry_s: float = RETRY_S,
        max_failed_readings: int = MAX_FAILED_READINGS,
    ) -> None:
        self._load = load
        self._monotonic = monotonic
        self._retry_s = retry_s
        self._max_failed = max_failed_readings
        self._nvml: Any = None
        self._handles: list[tuple[int, Any, str]] = []
        self._retry_at = -math.inf
        self._failed_readings = 0
        self._closed = False
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._last_reason = ""

    @property
    def enabled(self) -> bool:
        """True while NVML is started and GPU readings are reported."""
        return self._nvml is not None

    def read(self) -> list[Gpu] | None:
        """One reading per device, or ``None`` when GPU reporting is unavailable."""
        with self._lock:
            if self._closed:
                return None
            if self._nvml is None:
                now = self._monotonic()
                if now < self._retry_at or not self._start(now):
                    return None
            return self._read_devices()

    def close(self) -> None:
        """Shut NVML down (when it was started); no GPU is read after this."""
        with self._lock:
            self._closed = True
            self._stop()

    def _start(self, now: float) -> bool:
        try:
            nvml = self._load()
        except Exception as exc:  # noqa: BLE001 - any failure here means "no GPU reporting"
            self._give_up(now, repr(exc))
            return False
        try:  # NVML is initialised from here on: whatever fails must shut it down
            handles = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                handles.append((index, handle, _text(nvml.nvmlDeviceGetName(handle))))
        except Exception as exc:  # noqa: BLE001 - same: no GPU reporting for now
            handles, reason = [], repr(exc)
        else:
            reason = "no devices"
        if not handles:
            _shutdown(nvml)
            self._give_up(now, reason)
            return False
        self._nvml, self._handles, self._failed_readings = nvml, handles, 0
        self._last_reason = ""
        log.debug("gpu reporting started", extra={"kv": {"devices": len(handles)}})
        return True

    def _give_up(self, now: float, reason: str) -> None:
        """No GPU reporting until ``now + retry_s``; logged when the reason is new."""
        self._retry_at = now + self._retry_s
        if reason != self._last_reason:
            self._last_reason = reason
            log.debug(
                "gpu reporting unavailable",
                extra={"kv": {"reason": reason, "retry_s": self._retry_s}},
            )

    def _stop(self) -> None:
        nvml, self._nvml, self._handles = self._nvml, None, []
        if nvml is not None:
            _shutdown(nvml)

    def _read_devices(self) -> list[Gpu] | None:
        readings = [self._read_device(index, handle, name) for index, handle, name in self._handles]
        answered = [reading for reading in readings if reading is not None]
        if answered:
            self._failed_readings = 0
            return answered
        self._failed_readings += 1
        if self._failed_readings >= self._max_failed:
            self._stop()
            self._give_up(self._monotonic(), f"no device answered {self._max_failed} times")
        return None

    def _read_device(self, index: int, handle: Any, name: str) -> Gpu | None:
        """The device's reading, or ``None`` when not one field could be read (GPU lost)."""
        nvml = self._nvml
        util = self._field("util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory = self._field("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        temp = self._field(
            "temp", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
        milliwatts = self._field("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        if all(value is None for value in (util, memory, temp, milliwatts)):
            return None
        return Gpu(
            index=index,
            name=name,
            util=_bounded(util, 0.0, 100.0),
            mem_used=_count(getattr(memory, "used", None)),
            mem_total=_count(getattr(memory, "total", None)),
            temp=_bounded(temp, -273.0, 1000.0),
            power_w=_bounded(None if milliwatts is None else milliwatts / 1000, 0.0, 1e6),
        )

    def _field(self, what: str, read: Callable[[], Any]) -> Any:
        """One reading; a field the device does not support is left out, not fatal."""
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - e.g. NVMLError_NotSupported for power
            if what not in self._failed:
                self._failed.add(what)
                log.debug(
                    "gpu field unavailable", extra={"kv": {"field": what, "error": repr(exc)}}
                )
            return None


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - shutting down; nothing to recover
        log.debug("nvml shutdown failed", extra={"kv": {"error": repr(exc)}})


def _text(value: Any) -> str:
    """Device names are ``bytes`` in older nvidia-ml-py releases and ``str`` in newer ones."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return text[:_MAX_NAME]


def _bounded(value: Any, low: float, high: float) -> float | None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(min(max(float(value), low), high), 1)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 0 else None
