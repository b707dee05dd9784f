"""The sampler's arithmetic, as pure functions of plain values (no psutil, no I/O).

CPU busy share from cumulative CPU times, per-second rates from monotonic counters that
may be reset, and the choice of which mounts, disks, network interfaces and temperature
sensors a sample reports. :mod:`edge_agent.sampler` feeds these with psutil readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from arete.payloads import Mount

MAX_MOUNTS: Final = 32
MAX_TEMPS: Final = 64
MAX_KEY: Final = 256  # the payload's limit on names

Counters = Mapping[str, Sequence[int]]
"""Monotonic counters by device name, e.g. ``{"sda": (read_bytes, write_bytes, ...)}``."""


def rate(prev: int, cur: int, elapsed: float) -> float:
    """Per-second rate of a monotonic counter; 0 when it went backwards or no time passed.

    psutil already unwraps 32-bit kernel counters (``nowrap=True``), so a counter that
    goes backwards was reset (driver reload, device re-plugged): there is no honest rate
    for that interval, and a huge or negative one would be worse than none.
    """
    if elapsed <= 0 or cur < prev:
        return 0.0
    return (cur - prev) / elapsed


def summed_rates(prev: Counters, cur: Counters, elapsed: float, width: int) -> list[float]:
    """Per-field rates summed over the devices present in both readings.

    Summing per device means one device's reset or disappearance zeroes only its own
    share, and a device that just appeared contributes from its second reading on.
    """
    totals = [0.0] * width
    for name, now in cur.items():
        before = prev.get(name)
        if before is None:
            continue
        for field in range(width):
            totals[field] += rate(before[field], now[field], elapsed)
    return totals


def cpu_split(times: Mapping[str, float]) -> tuple[float, float]:
    """``(busy, total)`` seconds of one CPU, counted the way ``psutil.cpu_percent`` does.

    Linux counts guest time inside user/nice already, so it is not added twice; idle and
    I/O wait are not busy.
    """
    total = sum(times.values()) - times.get("guest", 0.0) - times.get("guest_nice", 0.0)
    busy = total - times.get("idle", 0.0) - times.get("iowait", 0.0)
    return busy, total


def busy_percent(prev: tuple[float, float], cur: tuple[float, float]) -> float:
    """Busy share in percent between two :func:`cpu_split` readings, clamped to 0-100."""
    total = cur[1] - prev[1]
    if total <= 0:
        return 0.0
    return percent((cur[0] - prev[0]) / total * 100)


def percent(value: float) -> float:
    """Clamp to 0-100 (the payload's range) and round to 0.1; NaN becomes 0."""
    if not math.isfinite(value):
        return 0.0 if math.isnan(value) or value < 0 else 100.0
    return round(min(max(value, 0.0), 100.0), 1)


class Partition(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    opts: str = ""


# Pseudo, read-only image and container-layer filesystems: their "usage" is not a disk
# filling up (a squashfs snap is always 100 % full).
IGNORED_FSTYPES: Final = frozenset(
    {
        "",
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "erofs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fuse.snapfuse",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "udf",
    }
)
IGNORED_MOUNT_PREFIXES: Final = (
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/snap/",
    "/var/snap/",
    "/var/lib/docker/",
    "/var/lib/containers/",
    "/var/lib/kubelet/",
    "/System/Volumes/",  # macOS system volumes; the user's data volume is kept below
)
KEPT_MOUNTS: Final = frozenset({"/System/Volumes/Data"})
# Files that container runtimes bind-mount from the host's disk.
IGNORED_MOUNTS: Final = frozenset(
    {"/proc", "/sys", "/dev", "/run", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
)


def select_mounts(partitions: Iterable[Partition], limit: int = MAX_MOUNTS) -> list[str]:
    """The mount points worth reporting: real filesystems, each device once, sorted.

    A device mounted several times (bind mounts, btrfs subvolumes) shows the same usage
    everywhere, so only its shortest mount point is kept.
    """
    by_device: dict[str, str] = {}
    for part in partitions:
        point = part.mountpoint
        if _ignored_mount(part, point):
            continue
        device = part.device or point
        kept = by_device.get(device)
        if kept is None or (len(point), point) < (len(kept), kept):
            by_device[device] = point
    return sorted(set(by_device.values()))[:limit]


def _ignored_mount(part: Partition, point: str) -> bool:
    if part.fstype.lower() in IGNORED_FSTYPES or "cdrom" in part.opts.split(","):
        return True
    if point in KEPT_MOUNTS:
        return False
    return point in IGNORED_MOUNTS or point.startswith(IGNORED_MOUNT_PREFIXES)


def fullest(mounts: Sequence[Mount]) -> float:
    """The highest usage of any mount, in percent (0 when there is none)."""
    return max((mount.pct for mount in mounts), default=0.0)


# Whole-disk devices whose I/O is already counted on the physical disks under them
# (device-mapper, md RAID) or that are not disks at all (loop images, RAM disks, zram swap).
VIRTUAL_DISK_PREFIXES: Final = ("loop", "ram", "zram", "dm-", "md", "fd", "sr")


def counted_disks(names: Iterable[str], whole_disks: frozenset[str]) -> list[str]:
    """Physical whole disks among ``names``: no partitions, no stacked or virtual devices."""
    return [
        name for name in names if name in whole_disks and not name.startswith(VIRTUAL_DISK_PREFIXES)
    ]


LOOPBACK_NICS: Final = frozenset({"lo", "lo0", "Loopback Pseudo-Interface 1"})
# Interfaces that mirror traffic already seen on another one: container veth pairs and
# the intermediate functional blocks used for ingress shaping.
MIRROR_NIC_PREFIXES: Final = ("veth", "ifb")


def counted_nic(name: str) -> bool:
    """Whether an interface's traffic counts toward the machine's network rates."""
    return name not in LOOPBACK_NICS and not name.startswith(MIRROR_NIC_PREFIXES)


class TempReading(NamedTuple):
    label: str
    current: float | None


def flatten_temps(
    sensors: Mapping[str, Sequence[TempReading]], limit: int = MAX_TEMPS
) -> dict[str, float] | None:
    """``{"chip/label": celsius}`` from psutil's sensors; ``None`` when there is none.

    Unlabelled readings are numbered within their chip; impossible values are dropped.
    """
    flat: dict[str, float] = {}
    for chip, readings in sensors.items():
        for number, reading in enumerate(readings):
            value = reading.current
            if value is None or not math.isfinite(value) or not -273.15 <= value <= 1000:
                continue
            key = f"{chip}/{reading.label or number}"[:MAX_KEY]
            flat[key] = round(float(value), 1)
            if len(flat) >= limit:
                return flat
    return flat or None
