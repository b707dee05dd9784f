"""GpuProbe against a stand-in NVML: readings, unsupported fields, no driver, retries."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from arete.payloads import Gpu
from edge_agent.gpu import GpuProbe


class NotSupportedError(Exception):
    """Like pynvml.NVMLError_NotSupported."""


class GpuIsLostError(Exception):
    """Like pynvml.NVMLError_GpuIsLost: the device fell off the bus."""


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices
        self.shut_down = False
        self.lost = False  # every device query fails, as when a GPU fell off the bus
        self.count_fails = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - pynvml's names
        if self.count_fails:
            raise GpuIsLostError("Unknown Error")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return handle["name"]

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        self._check(handle)
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        self._check(handle)
        return SimpleNamespace(used=handle["used"], total=handle["total"], free=0)

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:  # noqa: N802
        self._check(handle)
        assert sensor == self.NVML_TEMPERATURE_GPU
        temp: int = handle["temp"]
        return temp

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:  # noqa: N802
        self._check(handle)
        if handle.get("power_mw") is None:
            raise NotSupportedError("Not Supported")
        power: int = handle["power_mw"]
        return power

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down = True

    def _check(self, handle: dict[str, Any]) -> None:
        if self.lost or handle.get("lost"):
            raise GpuIsLostError("GPU is lost")


def t4() -> dict[str, Any]:
    return {"name": "Tesla T4", "util": 37, "used": 1, "total": 2, "temp": 51, "power_mw": 27_000}


class Loader:
    """A ``load`` for GpuProbe that counts its calls and fails until given an NVML."""

    def __init__(self, nvml: FakeNvml | None = None) -> None:
        self.nvml = nvml
        self.calls = 0

    def __call__(self) -> FakeNvml:
        self.calls += 1
        if self.nvml is None:
            raise RuntimeError("no NVIDIA driver loaded (/proc/driver/nvidia is absent)")
        self.nvml.shut_down = False
        return self.nvml


def test_each_device_is_read_with_power_in_watts() -> None:
    nvml = FakeNvml(
        [
            {"name": b"Tesla T4", "util": 37, "used": 2**30, "total": 16 * 2**30, "temp": 51,
             "power_mw": 27_512},
            {"name": "NVIDIA A100", "util": 100, "used": 0, "total": 80 * 2**30, "temp": 33,
             "power_mw": 61_000},
        ]
    )  # fmt: skip
    probe = GpuProbe(load=lambda: nvml)
    assert probe.read() == [
        Gpu(0, "Tesla T4", 37.0, 2**30, 16 * 2**30, 51.0, 27.5),
        Gpu(1, "NVIDIA A100", 100.0, 0, 80 * 2**30, 33.0, 61.0),
    ]
    probe.close()
    assert nvml.shut_down
    assert probe.read() is None


def test_an_unsupported_field_is_left_out_not_fatal() -> None:
    nvml = FakeNvml(
        [
            {
                "name": "GeForce GTX 1050",
                "util": 5,
                "used": 1,
                "total": 2,
                "temp": 40,
                "power_mw": None,
            }
        ]
    )
    reading = GpuProbe(load=lambda: nvml).read()
    assert reading is not None
    assert reading[0].power_w is None
    assert reading[0].util == 5.0


def test_without_a_driver_gpu_is_omitted_quietly_and_looked_for_again_every_few_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="arete.agent.gpu")
    now = [0.0]
    load = Loader()
    probe = GpuProbe(load=load, monotonic=lambda: now[0], retry_s=300.0)
    for _ in range(10):  # one reading a second: the driver is not looked for each time
        assert probe.read() is None
        now[0] += 1.0
    assert not probe.enabled
    assert load.calls == 1

    now[0] = 299.0
    assert probe.read() is None
    assert load.calls == 1
    now[0] = 300.0
    assert probe.read() is None
    assert load.calls == 2

    load.nvml = FakeNvml([t4()])  # the driver loaded after the agent started
    now[0] = 600.0
    assert probe.read() == [Gpu(0, "Tesla T4", 37.0, 1, 2, 51.0, 27.0)]
    assert probe.enabled
    assert all(record.levelno == logging.DEBUG for record in caplog.records)
    unavailable = [r for r in caplog.records if r.getMessage() == "gpu reporting unavailable"]
    assert len(unavailable) == 1, "the same reason is logged once, not every retry"


def test_a_driver_without_devices_reports_no_gpu_and_shuts_nvml_down() -> None:
    nvml = FakeNvml([])
    probe = GpuProbe(load=lambda: nvml)
    assert probe.read() is None
    assert nvml.shut_down


def test_nvml_is_shut_down_when_listing_devices_fails_after_it_started() -> None:
    nvml = FakeNvml([t4()])
    nvml.count_fails = True
    probe = GpuProbe(load=lambda: nvml)
    assert probe.read() is None
    assert nvml.shut_down
    assert not probe.enabled


def test_a_gpu_that_stops_answering_is_switched_off_after_n_readings_and_retried_later() -> None:
    now = [0.0]
    nvml = FakeNvml([t4()])
    load = Loader(nvml)
    probe = GpuProbe(load=load, monotonic=lambda: now[0], retry_s=300.0, max_failed_readings=3)
    assert probe.read() is not None

    nvml.lost = True
    for _ in range(2):
        now[0] += 1.0
        assert probe.read() is None
        assert probe.enabled, "a failed reading or two is not yet a lost GPU"
    now[0] += 1.0
    assert probe.read() is None
    assert not probe.enabled
    assert nvml.shut_down

    nvml.lost = False  # e.g. the driver was reloaded
    now[0] += 299.0
    assert probe.read() is None
    assert load.calls == 1
    now[0] += 1.0
    assert probe.read() == [Gpu(0, "Tesla T4", 37.0, 1, 2, 51.0, 27.0)]
    assert load.calls == 2


def test_a_good_reading_resets_the_count_of_failed_ones() -> None:
    nvml = FakeNvml([t4()])
    probe = GpuProbe(load=lambda: nvml, max_failed_readings=2)
    for _ in range(5):
        nvml.lost = True
        assert probe.read() is None
        nvml.lost = False
        assert probe.read() is not None
    assert probe.enabled


def test_a_lost_device_is_left_out_and_never_switches_off_one_that_answers() -> None:
    nvml = FakeNvml([t4(), {**t4(), "name": "A100", "lost": True}])
    probe = GpuProbe(load=lambda: nvml, max_failed_readings=2)
    for _ in range(5):
        reading = probe.read()
        assert reading is not None
        assert [gpu.name for gpu in reading] == ["Tesla T4"]
    assert probe.enabled


def test_after_close_nvml_is_never_started_again() -> None:
    now = [0.0]
    load = Loader(FakeNvml([t4()]))
    probe = GpuProbe(load=load, monotonic=lambda: now[0], retry_s=1.0)
    assert probe.read() is not None
    probe.close()
    now[0] += 1_000.0
    assert probe.read() is None
    assert load.calls == 1
