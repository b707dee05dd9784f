"""The sampler's arithmetic, as pure functions of plain values (no psutil, no I/O).

CPU busy share from cumulative CPU times, per-second rates from monotonic counters,
memory from ``/proc/meminfo``, and the choice of which mounts, disks, network interfaces
and temperature sensors a sample reports. :mod:`edge_agent.sampler` feeds these with
psutil and ``/proc`` readings.
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
    """Per-second rate of a monotonic counter; 0 when no time passed or it went backwards.

    The sampler reads the kernel's raw counters (psutil's ``nowrap=False``), so a counter
    goes backwards when it wrapped (32-bit ``/proc/diskstats`` sector counts on a 32-bit
    kernel) or was reset (driver reloaded, device re-plugged under the same name). How
    much happened in that interval is unknown: 0 is reported rather than a huge or
    negative rate (which the payload would reject), and the next interval is exact again.
    """
    if elapsed <= 0 or cur < prev:
        return 0.0
    return (cur - prev) / elapsed


def summed_rates(prev: Counters, cur: Counters, elapsed: float, width: int) -> list[float]:
    """Per-field rates summed over the devices present in both readings.

    A device that appeared or vanished during the window (USB NIC, hot-plugged disk) is
    left out of that window instead of contributing its whole lifetime counter; it
    counts from its second reading on.
    """
    totals = [0.0] * width
    for name, now in cur.items():
        before = prev.get(name)
        if before is None:
            continue
        for field in range(width):
            totals[field] += rate(before[field], now[field], elapsed)
    return totals


class CpuFields(NamedTuple):
    """Where idle and guest time sit in a platform's CPU-times tuple (psutil's field order).

    Worked out once from the field names, so each reading is plain tuple arithmetic.
    """

    idle: tuple[int, ...]  # idle and I/O wait: not busy
    guest: tuple[int, ...]  # already inside user/nice on Linux: not counted twice

    @classmethod
    def of(cls, names: Sequence[str]) -> CpuFields:
        return cls(
            idle=tuple(i for i, name in enumerate(names) if name in {"idle", "iowait"}),
            guest=tuple(i for i, name in enumerate(names) if name in {"guest", "guest_nice"}),
        )


def cpu_split(times: Sequence[float], fields: CpuFields) -> tuple[float, float]:
    """``(busy, total)`` seconds of one CPU, counted the way ``psutil.cpu_percent`` does."""
    total = sum(times)
    for index in fields.guest:
        total -= times[index]
    busy = total
    for index in fields.idle:
        busy -= times[index]
    return busy, total


def busy_percent(prev: tuple[float, float], cur: tuple[float, float]) -> float:
    """Busy share in percent between two :func:`cpu_split` readings, clamped to 0-100."""
    total = cur[1] - prev[1]
    if total <= 0:
        return 0.0
    return percent((cur[0] - prev[0]) / total * 100)


def cpu_percents(
    prev: Sequence[tuple[float, float]],
    cur: Sequence[tuple[float, float]],
    last_percents: list[float],
) -> list[float]:
    """Busy percent per core between two readings of every core.

    When a CPU went on- or offline between them the cores no longer pair up, so the
    interval has no per-core meaning: the previous interval's values stand in for it
    rather than a whole machine at 0 %.
    """
    if len(prev) != len(cur):
        return last_percents
    return [busy_percent(before, now) for before, now in zip(prev, cur, strict=True)]


def percent(value: float) -> float:
    """Clamp to 0-100 (the payload's range) and round to 0.1; NaN becomes 0."""
    if not math.isfinite(value):
        return 0.0 if math.isnan(value) or value < 0 else 100.0
    return round(min(max(value, 0.0), 100.0), 1)


class MemoryUse(NamedTuple):
    total: int  # bytes
    used: int  # bytes: total - available, as psutil and ``free`` count it
    pct: float


MEMINFO_FIELDS: Final = frozenset({"MemTotal", "MemFree", "MemAvailable", "SwapTotal", "SwapFree"})


def parse_meminfo(text: str) -> dict[str, int]:
    """The :data:`MEMINFO_FIELDS` of ``/proc/meminfo``, in bytes (the file says kB)."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in MEMINFO_FIELDS:
            found[key] = int(value.split()[0]) * 1024
            if len(found) == len(MEMINFO_FIELDS):  # all near the top: skip the other ~50
                break
    return found


def memory_use(meminfo: Mapping[str, int]) -> MemoryUse | None:
    """Memory in use the way ``psutil.virtual_memory`` counts it: total - available.

    ``None`` when the kernel gives no usable ``MemAvailable`` (before 3.14, or 0 through
    a kernel bug): psutil estimates it then, and the sampler asks psutil.
    """
    total = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable", 0)
    if total <= 0 or available <= 0:
        return None
    if available > total:  # LXC containers can report the host's figure; psutil does this
        available = meminfo.get("MemFree", 0)
    used = total - available
    return MemoryUse(total, used, percent(used / total * 100))


def swap_percent(meminfo: Mapping[str, int]) -> float | None:
    """Swap in use in percent (0 without swap), or ``None`` when the fields are missing."""
    total, free = meminfo.get("SwapTotal"), meminfo.get("SwapFree")
    if total is None or free is None:
        return None
    return percent((total - free) / total * 100) if total > 0 else 0.0


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
# (device-mapper, md RAID) or that are not disks at all (loop images, RAM disks, zram
# swap), and removable drives (floppy, CD) even when they are hardware.
VIRTUAL_DISK_PREFIXES: Final = ("loop", "ram", "zram", "dm-", "md", "fd", "sr")


def counted_disks(
    names: Iterable[str], whole_disks: frozenset[str], hardware: frozenset[str] = frozenset()
) -> list[str]:
    """Physical whole disks among ``names`` (``/proc/diskstats`` names).

    ``whole_disks`` are the entries of ``/sys/block`` (no partitions there); ``hardware``
    those of them with a ``device`` link. When any disk has one, only those count: that
    leaves out every stacked or software device (dm, md, loop, nbd, rbd, zd, bcache, zram)
    without having to know its name. Without any, :data:`VIRTUAL_DISK_PREFIXES` decide.
    """
    eligible = hardware or whole_disks
    return [
        name
        for name in names
        # sysfs spells a "/" in a device name (cciss/c0d0) as "!"
        if name.replace("/", "!") in eligible and not name.startswith(VIRTUAL_DISK_PREFIXES)
    ]


LOOPBACK_NICS: Final = frozenset({"lo", "lo0", "Loopback Pseudo-Interface 1"})
# Interfaces that mirror traffic already seen on another one: container veth pairs and
# the intermediate functional blocks used for ingress shaping.
MIRROR_NIC_PREFIXES: Final = ("veth", "ifb")


def counted_nic(name: str) -> bool:
    """The name-based rule, for when no interface is known to be hardware."""
    return name not in LOOPBACK_NICS and not name.startswith(MIRROR_NIC_PREFIXES)


def counted_nics(names: Iterable[str], hardware: frozenset[str] = frozenset()) -> list[str]:
    """The interfaces whose traffic counts toward the machine's network rates.

    ``hardware`` are the interfaces with a ``/sys/class/net/<name>/device`` link: physical
    NICs and virtual-hardware ones (virtio, SR-IOV). When there is any, only those count,
    because bonds and their members, VLANs and their parent, bridges (docker0, br-*,
    virbr0) and tunnels (wg0, tun*) all carry traffic that a hardware NIC counts too.
    When there is none (a container whose only interface is its veth ``eth0``), the
    name-based :func:`counted_nic` rule decides.
    """
    if hardware:
        return [name for name in names if name in hardware]
    return [name for name in names if counted_nic(name)]


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
