"""The sampler's arithmetic with plain inputs: rates, CPU, memory, mounts, disks, NICs, temps."""

from __future__ import annotations

import math

import pytest

from arete.payloads import Mount
from edge_agent.sampler_math import (
    CpuFields,
    MemoryUse,
    Partition,
    TempReading,
    busy_percent,
    counted_disks,
    counted_nic,
    counted_nics,
    cpu_percents,
    cpu_split,
    flatten_temps,
    fullest,
    memory_use,
    parse_meminfo,
    percent,
    rate,
    select_mounts,
    summed_rates,
    swap_percent,
)


# -- rates --------------------------------------------------------------------------------
def test_rate_is_the_counter_delta_per_second() -> None:
    assert rate(1_000, 3_000, 2.0) == 1_000.0


@pytest.mark.parametrize("elapsed", [0.0, -1.0])
def test_rate_is_zero_when_no_time_passed(elapsed: float) -> None:
    assert rate(0, 500, elapsed) == 0.0


def test_a_raw_counter_that_wrapped_or_was_reset_gives_no_rate_for_that_interval() -> None:
    assert rate(2**32 - 10, 5, 1.0) == 0.0  # 32-bit sector count wrapped
    assert rate(10**12, 0, 1.0) == 0.0  # NIC driver reloaded
    assert rate(5, 1_005, 1.0) == 1_000.0  # and the next interval is exact again


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
LINUX_CPU_FIELDS = (
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"
)  # fmt: skip


def test_cpu_split_does_not_count_guest_time_twice_nor_idle_and_iowait_as_busy() -> None:
    # user includes the 20 s of guest time, as Linux reports it
    times = (50.0, 0.0, 10.0, 30.0, 10.0, 0.0, 0.0, 0.0, 20.0, 0.0)
    assert cpu_split(times, CpuFields.of(LINUX_CPU_FIELDS)) == (60.0, 100.0)


@pytest.mark.parametrize(
    ("names", "times", "expected"),
    [
        pytest.param(
            ("user", "nice", "system", "idle"), (30.0, 0.0, 10.0, 60.0), (40.0, 100.0), id="macos"
        ),
        pytest.param(
            ("user", "system", "idle", "interrupt", "dpc"),
            (20.0, 5.0, 70.0, 3.0, 2.0),
            (30.0, 100.0),
            id="windows",
        ),
    ],
)
def test_cpu_split_follows_each_platforms_fields(
    names: tuple[str, ...], times: tuple[float, ...], expected: tuple[float, float]
) -> None:
    assert cpu_split(times, CpuFields.of(names)) == expected


def test_busy_percent_between_two_readings() -> None:
    assert busy_percent((10.0, 100.0), (40.0, 200.0)) == 30.0


def test_busy_percent_without_elapsed_cpu_time_is_zero() -> None:
    assert busy_percent((10.0, 100.0), (10.0, 100.0)) == 0.0
    assert busy_percent((10.0, 100.0), (10.0, 90.0)) == 0.0


def test_busy_percent_stays_in_the_payload_range_when_counters_jitter() -> None:
    assert busy_percent((0.0, 100.0), (120.0, 200.0)) == 100.0
    assert busy_percent((50.0, 100.0), (40.0, 200.0)) == 0.0


def test_each_core_gets_its_busy_share_of_the_interval() -> None:
    prev = [(10.0, 100.0), (0.0, 100.0)]
    cur = [(40.0, 200.0), (100.0, 200.0)]
    assert cpu_percents(prev, cur, [5.0, 5.0]) == [30.0, 100.0]


def test_a_cpu_going_on_or_offline_repeats_the_last_interval_instead_of_zero() -> None:
    two = [(10.0, 100.0), (20.0, 100.0)]
    three = [(15.0, 150.0), (25.0, 150.0), (0.0, 0.0)]
    assert cpu_percents(two, three, [12.5, 80.0]) == [12.5, 80.0]
    assert cpu_percents(three, two, [1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12.345, 12.3), (-0.1, 0.0), (100.04, 100.0), (math.nan, 0.0), (math.inf, 100.0)],
)
def test_percent_is_clamped_rounded_and_finite(value: float, expected: float) -> None:
    assert percent(value) == expected


# -- memory -------------------------------------------------------------------------------
MEMINFO = """\
MemTotal:        8000000 kB
MemFree:          500000 kB
MemAvailable:    6000000 kB
Buffers:          100000 kB
Cached:          5000000 kB
SwapCached:            0 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_meminfo_fields_are_read_in_bytes() -> None:
    assert parse_meminfo(MEMINFO) == {
        "MemTotal": 8_000_000 * 1024,
        "MemFree": 500_000 * 1024,
        "MemAvailable": 6_000_000 * 1024,
        "SwapTotal": 2_000_000 * 1024,
        "SwapFree": 1_500_000 * 1024,
    }


def test_memory_used_is_total_minus_available_as_psutil_counts_it() -> None:
    assert memory_use(parse_meminfo(MEMINFO)) == MemoryUse(8_192_000_000, 2_048_000_000, 25.0)
    assert swap_percent(parse_meminfo(MEMINFO)) == 25.0


def test_available_above_total_falls_back_to_free_memory_like_psutil() -> None:
    # Some LXC containers show the host's MemAvailable next to the container's MemTotal.
    meminfo = {"MemTotal": 1_000, "MemFree": 250, "MemAvailable": 5_000}
    assert memory_use(meminfo) == MemoryUse(1_000, 750, 75.0)


@pytest.mark.parametrize(
    "meminfo",
    [
        {"MemTotal": 1_000, "MemFree": 250},  # kernel before 3.14
        {"MemTotal": 1_000, "MemFree": 250, "MemAvailable": 0},  # psutil issue 1915
        {},
    ],
)
def test_without_a_usable_mem_available_the_sampler_is_told_to_ask_psutil(
    meminfo: dict[str, int],
) -> None:
    assert memory_use(meminfo) is None


def test_no_swap_is_zero_percent_and_missing_swap_fields_are_unknown() -> None:
    assert swap_percent({"SwapTotal": 0, "SwapFree": 0}) == 0.0
    assert swap_percent({"MemTotal": 1_000}) is None


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
DISKSTATS_NAMES = [
    "sda", "sda1", "nvme0n1", "nvme0n1p1", "vda", "sr0", "dm-0", "md0", "loop3", "zram0",
    "nbd0", "rbd0", "zd0", "bcache0", "cciss/c0d0",
]  # fmt: skip
WHOLE_DISKS = frozenset(
    {"sda", "nvme0n1", "vda", "sr0", "dm-0", "md0", "loop3", "zram0", "nbd0", "rbd0", "zd0",
     "bcache0", "cciss!c0d0"}
)  # fmt: skip


def test_only_whole_disks_with_a_device_link_count_for_io() -> None:
    # nbd, rbd, ZFS zvols (zd) and bcache have no /sys/block/<name>/device: their I/O
    # is network traffic or already counted on the disks under them.
    hardware = frozenset({"sda", "nvme0n1", "vda", "sr0", "cciss!c0d0"})
    assert counted_disks(DISKSTATS_NAMES, WHOLE_DISKS, hardware) == [
        "sda",
        "nvme0n1",
        "vda",
        "cciss/c0d0",
    ]


def test_without_device_links_whole_disks_minus_known_virtual_ones_count() -> None:
    assert counted_disks(DISKSTATS_NAMES, WHOLE_DISKS) == [
        "sda",
        "nvme0n1",
        "vda",
        "nbd0",
        "rbd0",
        "zd0",
        "bcache0",
        "cciss/c0d0",
    ]


NIC_NAMES = [
    "lo", "eth0", "eth1", "bond0", "bond0.100", "docker0", "br-1a2b3c", "veth1a2b3c",
    "virbr0", "wg0", "tun0", "ifb0", "wlan0",
]  # fmt: skip


def test_only_hardware_interfaces_count_so_no_traffic_is_counted_twice() -> None:
    # eth0 and eth1 are bond0's members; bond0.100 is a VLAN on it; bridges and tunnels
    # carry traffic that crosses a hardware NIC too.
    hardware = frozenset({"eth0", "eth1", "wlan0"})
    assert counted_nics(NIC_NAMES, hardware) == ["eth0", "eth1", "wlan0"]


def test_without_hardware_interfaces_only_loopback_and_mirrors_are_left_out() -> None:
    # A container: its eth0 is the inside end of a veth pair, with no device link.
    assert counted_nics(["lo", "eth0"]) == ["eth0"]
    assert counted_nics(NIC_NAMES) == [
        name for name in NIC_NAMES if name not in {"lo", "veth1a2b3c", "ifb0"}
    ]


@pytest.mark.parametrize("name", ["lo", "lo0", "Loopback Pseudo-Interface 1", "veth1a2b3c", "ifb0"])
def test_loopback_and_mirror_interfaces_never_count_by_name(name: str) -> None:
    assert not counted_nic(name)


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
