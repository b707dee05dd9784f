"""Prometheus exporter: what one scrape of the fleet costs the maestro, next to
prometheus_client rendering the same series, measured in the same run.

The maestro renders every agent's newest sample as series when Prometheus scrapes; the
render holds the GIL the MQTT thread needs, so its CPU time is ingest stalled. Compared
on the same fleet (every agent online, 2 cores, load, memory, two mounts, every fourth
agent with temperatures and a GPU, three labels):

- baseline: ``maestro.exporter.fleet_families`` (prometheus_client ``Metric`` objects)
  through ``prometheus_client.generate_latest`` (what the maestro did until now);
- ``maestro.fleet_text.render_fleet``: the same series written straight as text (what it
  does now), parsed back at the smallest size to check both say the same thing;
- a scrape within ``exporter_cache_s`` of the previous one costs neither (the cached text
  is reused), and gzip (level 6, what the endpoint uses when asked) comes on top of both.

CPU is this process's (``time.process_time``), best of ``--repeat`` interleaved runs.

Usage: ``python bench/exporter.py [--agents 1000,10000,20000] [--repeat 3] [--write]``;
``--write`` puts the table in BENCHMARKS.md (section ``prometheus-exporter``).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from sections import replace_section

from arete.payloads import Gpu, Mount, Sample
from maestro.exporter import AgentView, fleet_families
from maestro.fleet_text import render_fleet

SIZES = (1_000, 10_000, 20_000)


def fleet(n: int) -> list[AgentView]:
    now = time.time()
    views = []
    for i in range(n):
        extra: dict[str, Any] = {}
        if i % 4 == 0:
            extra = {
                "temps": {"cpu": 50.0 + i % 10, "nvme0": 40.5},
                "gpu": [Gpu(0, "NVIDIA T4", 30.0, 2 << 30, 16 << 30, 60.0, 70.5)],
            }
        sample = Sample(
            ts=now - i % 5,
            seq=i,
            cpu=12.5 + i % 80,
            cpus=[10.0 + i % 7, 15.25],
            load=(0.5, 0.4, 0.3),
            mem=40.0,
            mem_used=(4 << 30) + i,
            mem_total=8 << 30,
            swap=1.0,
            disk=61.5,
            mounts=[
                Mount("/", 10 << 30, (1 << 30) + i, 10.0),
                Mount("/var/lib/data", 100 << 30, 60 << 30, 60.0),
            ],
            net_rx_bps=12345.0 + i,
            net_tx_bps=2345.0,
            disk_read_bps=4096.0,
            disk_write_bps=8192.0,
            disk_read_iops=1.0,
            disk_write_iops=2.5,
            uptime_s=86_400.0 + i,
            procs=200 + i % 50,
            **extra,
        )
        labels = {"site": f"site-{i % 7}", "role": "web" if i % 2 else "db", "env": "prod"}
        views.append(AgentView(f"agent-{i:06d}", "online", labels, f"h{i}", "1.4.0", sample))
    return views


class _Static:
    def __init__(self, views: list[AgentView]) -> None:
        self.views = views

    def collect(self) -> Iterator[Metric]:
        yield from fleet_families(self.views)


def baseline(views: list[AgentView]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(views))
    return generate_latest(registry)


def direct(views: list[AgentView]) -> bytes:
    return render_fleet(views).body


def cpu_s(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def same_series(old: bytes, new: bytes) -> bool:
    def series(text: bytes) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
        return {
            (s.name, frozenset(s.labels.items()), s.value)
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples
        }

    return series(old) == series(new)


@dataclass
class Row:
    agents: int
    series: int
    size_mb: float
    baseline_s: float
    direct_s: float
    gzip_s: float

    @property
    def ratio(self) -> float:
        return self.direct_s / self.baseline_s


def measure(n: int, repeat: int, check: bool) -> Row:
    views = fleet(n)
    old_s = new_s = zip_s = float("inf")
    for _ in range(repeat):  # interleaved: a busy machine slows both alike
        took, old = cpu_s(lambda: baseline(views))
        old_s = min(old_s, took)
        took, new = cpu_s(lambda: direct(views))
        new_s = min(new_s, took)
        took, _ = cpu_s(functools.partial(gzip.compress, new, compresslevel=6))
        zip_s = min(zip_s, took)
    if check and not same_series(old, new):
        raise SystemExit(f"{n} agents: the direct text does not parse to the same series")
    lines = sum(1 for line in new.splitlines() if not line.startswith(b"#"))
    return Row(n, lines, len(new) / 1e6, old_s, new_s, zip_s)


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{model or platform.machine()}, Python {platform.python_version()}, "
        f"prometheus_client {metadata.version('prometheus_client')}"
    )


def render(rows: Sequence[Row], repeat: int) -> str:
    lines = [
        "## Prometheus exporter: one scrape of the fleet (`bench/exporter.py`)",
        "",
        f"{time.strftime('%Y-%m-%d')}. Machine: {machine()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end (a shared machine: compare the ratios). CPU "
        "seconds of one render of "
        f"the fleet's series, best of {repeat}; Python code holding the GIL all along (the "
        "maestro's MQTT thread gets it only in turns meanwhile). Baseline: prometheus_client "
        "`Metric` objects + "
        "`generate_latest` of the same series (what the maestro did before); now: "
        "`maestro.fleet_text` writes the text directly (checked to parse to the same "
        "series). Each agent: 2 cores, load, memory, 2 mounts, 3 labels; every fourth one "
        "also temperatures and a GPU.",
        "",
        "| agents | series | text MB | baseline CPU s | direct CPU s | **ratio direct / "
        "baseline** | gzip -6 CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.agents:,} | {r.series:,} | {r.size_mb:.1f} | {r.baseline_s:.3f} | "
            f"{r.direct_s:.3f} | **{r.ratio:.2f}x** | {r.gzip_s:.3f} |"
        )
    lines += [
        "",
        "- A scrape within `exporter_cache_s` (default 5 s) of the last render reuses its "
        "text: an HA pair of Prometheus servers, or rapid scrapes, cost one render per "
        "window. The maestro's own `arete_maestro_*` series are always fresh (a few dozen).",
        "- `/metrics?name[]=...` naming only maestro series renders no fleet at all.",
        "- gzip (when the scraper asks, Prometheus does) releases the GIL while it compresses.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exporter.py", description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default=",".join(map(str, SIZES)), help="fleet sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure (best kept)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        sizes = [int(part) for part in args.agents.split(",")]
    except ValueError:
        parser.error("--agents is comma-separated agent counts, e.g. 1000,10000")
    if args.repeat < 1 or any(n < 1 for n in sizes):
        parser.error("--repeat and the fleet sizes must be positive")
    rows = []
    for index, n in enumerate(sizes):
        rows.append(measure(n, args.repeat, check=index == 0))
        row = rows[-1]
        print(f"{n:,} agents: {row.baseline_s:.3f} s -> {row.direct_s:.3f} s", file=sys.stderr)
    body = render(rows, args.repeat)
    print(body)
    if args.write:
        print(f"wrote {replace_section('prometheus-exporter', body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
