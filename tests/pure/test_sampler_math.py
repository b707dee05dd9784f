"""The sampler's arithmetic with plain inputs: rates, CPU share, mounts, disks, NICs, temps."""

from __future__ import annotations

import math

import pytest

from arete.payloads import Mount
from edge_agent.sampler_math import (
    Partition,
    TempReading,
    busy_percent,
    counted_disks,
    counted_nic,
    cpu_split,
    flatten_temps,
    fullest,
    percent,
    rate,
    select_mounts,
    summed_rates,
)


# -- rates --------------------------------------------------------------------------------
def test_rate_is_the_counter_delta_per_second() -> None:
    assert rate(1_000, 3_000, 2.0) == 1_000.0


@pytest.mark.parametrize("elapsed", [0.0, -1.0])
def test_rate_is_zero_when_no_time_passed(elapsed: float) -> None:
    assert rate(0, 500, elapsed) == 0.0


def test_a_counter_that_went_backwards_was_reset_and_gives_no_rate() -> None:
    assert rate(2**32 - 10, 5, 1.0) == 0.0
    assert rate(10**12, 0, 1.0) == 0.0


def test_summed_rates_add_up_every_device_per_field() -> None:
    prev = {"sda": (100, 10), "sdb": (1_000, 0)}
    cur = {"sda": (300, 30), "sdb": (1_400, 0)}
    assert summed_rates(prev, cur, 2.0, 2) == [300.0, 10.0]


def test_a_reset_device_zeroes_only_its_own_share() -> None:
    prev = {"eth0": (1_000, 1_000), "wlan0": (5_000, 5_000)}
    cur = {"eth0": (2_000, 1_500), "wlan0": (10, 20)}
    assert summed_rates(prev, cur, 1.0, 2) == [1_000.0, 500.0]


def test_new_and_vanished_devices_do_not_count_their_whole_counter() -> None:
    prev = {"eth0": (0, 0), "usb0": (9_999, 9_999)}
    cur = {"eth0": (100, 50), "wg0": (10**9, 10**9)}
    assert summed_rates(prev, cur, 1.0, 2) == [100.0, 50.0]


def test_rates_are_never_negative_whatever_the_counters_do() -> None:
    prev = {"a": (5, 5, 5, 5)}
    cur = {"a": (0, 4, 5, 6)}
    assert all(value >= 0 for value in summed_rates(prev, cur, 0.5, 4))


# -- CPU ----------------------------------------------------------------------------------
def test_cpu_split_does_not_count_guest_time_twice_nor_idle_and_iowait_as_busy() -> None:
    times = {
        "user": 50.0,  # includes the 20 s of guest time, as Linux reports it
        "nice": 0.0,
        "system": 10.0,
        "idle": 30.0,
        "iowait": 10.0,
        "guest": 20.0,
        "guest_nice": 0.0,
    }
    assert cpu_split(times) == (60.0, 100.0)


def test_busy_percent_between_two_readings() -> None:
    assert busy_percent((10.0, 100.0), (40.0, 200.0)) == 30.0


def test_busy_percent_without_elapsed_cpu_time_is_zero() -> None:
    assert busy_percent((10.0, 100.0), (10.0, 100.0)) == 0.0
    assert busy_percent((10.0, 100.0), (10.0, 90.0)) == 0.0


def test_busy_percent_stays_in_the_payload_range_when_counters_jitter() -> None:
    assert busy_percent((0.0, 100.0), (120.0, 200.0)) == 100.0
    assert busy_percent((50.0, 100.0), (40.0, 200.0)) == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12.345, 12.3), (-0.1, 0.0), (100.04, 100.0), (math.nan, 0.0), (math.inf, 100.0)],
)
def test_percent_is_clamped_rounded_and_finite(value: float, expected: float) -> None:
    assert percent(value) == expected


# -- mounts -------------------------------------------------------------------------------
def test_pseudo_image_and_container_layer_filesystems_are_not_disks() -> None:
    partitions = [
        Partition("/dev/sda1", "/", "ext4"),
        Partition("tmpfs", "/tmp", "tmpfs"),
        Partition("/dev/loop3", "/snap/core22/1380", "squashfs"),
        Partition("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay"),
        Partition("proc", "/proc", "proc"),
        Partition("/dev/sr0", "/media/cd", "iso9660"),
        Partition("/dev/sdb1", "/srv/data", "xfs"),
    ]
    assert select_mounts(partitions) == ["/", "/srv/data"]


def test_a_device_mounted_twice_is_reported_once_at_its_shortest_mount_point() -> None:
    partitions = [
        Partition("/dev/sda2", "/home/bind", "ext4"),
        Partition("/dev/sda2", "/home", "ext4"),
        Partition("/dev/nvme0n1p2", "/", "btrfs"),
        Partition("/dev/nvme0n1p2", "/var/log", "btrfs"),
    ]
    assert select_mounts(partitions) == ["/", "/home"]


def test_files_bind_mounted_into_a_container_are_not_mounts() -> None:
    partitions = [
        Partition("overlay", "/", "overlay"),
        Partition("/dev/sda1", "/etc/hosts", "ext4"),
        Partition("/dev/sda1", "/etc/resolv.conf", "ext4"),
        Partition("/dev/sdb1", "/data", "ext4"),
    ]
    assert select_mounts(partitions) == ["/data"]


def test_macos_keeps_the_data_volume_and_skips_the_system_ones() -> None:
    partitions = [
        Partition("/dev/disk3s1s1", "/", "apfs"),
        Partition("/dev/disk3s6", "/System/Volumes/VM", "apfs"),
        Partition("/dev/disk3s5", "/System/Volumes/Data", "apfs"),
        Partition("/dev/disk1s2", "/System/Volumes/xarts", "apfs"),
    ]
    assert select_mounts(partitions) == ["/", "/System/Volumes/Data"]


def test_windows_drives_are_kept_and_empty_cd_drives_are_not() -> None:
    partitions = [
        Partition("C:\\", "C:\\", "NTFS", "rw,fixed"),
        Partition("D:\\", "D:\\", "", "cdrom"),
        Partition("E:\\", "E:\\", "UDF", "ro,cdrom"),
    ]
    assert select_mounts(partitions) == ["C:\\"]


def test_the_number_of_mounts_is_bounded() -> None:
    partitions = [Partition(f"/dev/sd{i}", f"/mnt/{i:03}", "ext4") for i in range(100)]
    assert len(select_mounts(partitions, limit=32)) == 32


def test_fullest_mount_is_the_disk_figure() -> None:
    mounts = [Mount("/", 100, 40, 40.0), Mount("/var", 100, 93, 93.0), Mount("/boot", 10, 5, 50.0)]
    assert fullest(mounts) == 93.0
    assert fullest([]) == 0.0


# -- disks and interfaces -----------------------------------------------------------------
def test_only_physical_whole_disks_count_for_io() -> None:
    names = ["sda", "sda1", "nvme0n1", "nvme0n1p1", "dm-0", "md0", "loop3", "zram0", "vda"]
    whole = frozenset({"sda", "nvme0n1", "dm-0", "md0", "loop3", "zram0", "vda"})
    assert counted_disks(names, whole) == ["sda", "nvme0n1", "vda"]


@pytest.mark.parametrize(
    ("name", "counted"),
    [
        ("eth0", True),
        ("enp3s0", True),
        ("wlan0", True),
        ("docker0", True),
        ("lo", False),
        ("lo0", False),
        ("Loopback Pseudo-Interface 1", False),
        ("veth1a2b3c", False),
        ("ifb0", False),
    ],
)
def test_loopback_and_mirror_interfaces_are_not_network_traffic(name: str, counted: bool) -> None:
    assert counted_nic(name) is counted


# -- temperatures -------------------------------------------------------------------------
def test_temperatures_are_keyed_by_chip_and_label() -> None:
    sensors = {
        "coretemp": [TempReading("Package id 0", 45.04), TempReading("Core 0", 43.0)],
        "nvme": [TempReading("", 38.5), TempReading("", math.nan), TempReading("", None)],
        "acpitz": [TempReading("", -300.0)],
    }
    assert flatten_temps(sensors) == {
        "coretemp/Package id 0": 45.0,
        "coretemp/Core 0": 43.0,
        "nvme/0": 38.5,
    }


def test_no_sensors_means_no_temperatures() -> None:
    assert flatten_temps({}) is None
    assert flatten_temps({"acpitz": [TempReading("", None)]}) is None


def test_the_number_of_temperatures_is_bounded() -> None:
    sensors = {"chip": [TempReading(f"t{i}", 40.0) for i in range(200)]}
    flat = flatten_temps(sensors, limit=64)
    assert flat is not None
    assert len(flat) == 64
