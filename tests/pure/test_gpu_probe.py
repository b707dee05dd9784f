"""GpuProbe against a stand-in NVML: mapping of readings, unsupported fields, no driver."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from arete.payloads import Gpu
from edge_agent.gpu import GpuProbe


class NotSupportedError(Exception):
    """Like pynvml.NVMLError_NotSupported."""


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices
        self.shut_down = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - pynvml's names
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return handle["name"]

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return SimpleNamespace(used=handle["used"], total=handle["total"], free=0)

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:  # noqa: N802
        assert sensor == self.NVML_TEMPERATURE_GPU
        temp: int = handle["temp"]
        return temp

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:  # noqa: N802
        if handle.get("power_mw") is None:
            raise NotSupportedError("Not Supported")
        power: int = handle["power_mw"]
        return power

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down = True


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


def test_no_driver_disables_gpu_reporting_silently_and_for_good() -> None:
    calls = []

    def no_driver() -> Any:
        calls.append(1)
        raise RuntimeError("NVML Shared Library Not Found")

    probe = GpuProbe(load=no_driver)
    assert probe.read() is None
    assert probe.read() is None
    assert not probe.enabled
    assert len(calls) == 1


def test_a_driver_without_devices_reports_no_gpu() -> None:
    nvml = FakeNvml([])
    probe = GpuProbe(load=lambda: nvml)
    assert probe.read() is None
    assert nvml.shut_down
