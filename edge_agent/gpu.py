"""NVIDIA GPU readings through nvidia-ml-py (``pynvml``), loaded only when a GPU can exist.

No driver, no library or no device means no GPU reporting: :meth:`GpuProbe.read` returns
``None`` and the sample omits ``gpu``. That is the normal case on most machines, so it is
logged once at debug level and never raised.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arete.payloads import Gpu

log = logging.getLogger("arete.agent.gpu")

# Loaded by the NVIDIA kernel driver. Without it nvmlInit fails anyway, and checking first
# spares the agent the ~3 MiB that importing pynvml costs.
_LINUX_DRIVER = Path("/proc/driver/nvidia")
_MAX_NAME = 256


def load_nvml() -> Any:
    """Import and initialise pynvml; raise when there is no usable driver or library."""
    if sys.platform.startswith("linux") and not _LINUX_DRIVER.exists():
        raise RuntimeError(f"no NVIDIA driver loaded ({_LINUX_DRIVER} is absent)")
    import pynvml

    pynvml.nvmlInit()
    return pynvml


class GpuProbe:
    """Reads every NVIDIA device; initialises NVML on the first :meth:`read`."""

    def __init__(self, *, load: Callable[[], Any] = load_nvml) -> None:
        self._load = load
        self._nvml: Any = None
        self._handles: list[tuple[int, Any, str]] = []
        self._disabled = False
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    @property
    def enabled(self) -> bool:
        """False once NVML turned out to be unavailable."""
        return not self._disabled

    def read(self) -> list[Gpu] | None:
        """One reading per device, or ``None`` when GPU reporting is unavailable."""
        with self._lock:
            if self._disabled:
                return None
            if self._nvml is None and not self._start():
                return None
            return [self._read_device(index, handle, name) for index, handle, name in self._handles]

    def close(self) -> None:
        with self._lock:
            nvml, self._nvml = self._nvml, None
            self._handles = []
            self._disabled = True
            if nvml is not None:
                try:
                    nvml.nvmlShutdown()
                except Exception as exc:  # noqa: BLE001 - shutting down; nothing to recover
                    log.debug("nvml shutdown failed", extra={"kv": {"error": repr(exc)}})

    def _start(self) -> bool:
        try:
            nvml = self._load()
            handles = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                handles.append((index, handle, _text(nvml.nvmlDeviceGetName(handle))))
        except Exception as exc:  # noqa: BLE001 - any failure here means "no GPU reporting"
            self._disabled = True
            log.debug("gpu reporting disabled", extra={"kv": {"reason": repr(exc)}})
            return False
        if not handles:
            self._disabled = True
            log.debug("gpu reporting disabled", extra={"kv": {"reason": "no devices"}})
            with contextlib.suppress(Exception):  # nothing to recover while giving up
                nvml.nvmlShutdown()
            return False
        self._nvml, self._handles = nvml, handles
        return True

    def _read_device(self, index: int, handle: Any, name: str) -> Gpu:
        nvml = self._nvml
        util = self._field("util", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory = self._field("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        temp = self._field(
            "temp", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
        milliwatts = self._field("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
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
