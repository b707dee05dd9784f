"""Metrics payload codec: msgspec (the contract's codec) against the standard library.

Decoding is what the maestro does tens of thousands of times a second; encoding is what
each agent does once a second. Compared on realistic ``metrics`` messages, all measured
in the same run:

- ``json.loads``: the stdlib baseline, no validation at all (ratio 1.00);
- ``msgspec``: ``arete.payloads.decode_metrics``, typed and validated (what Areté uses);
- ``json.loads`` + hand checks: the same validation written by hand in Python;
- pydantic v2 ``model_validate_json`` with equivalent models, when pydantic is installed.

Usage: ``python bench/codec.py [--seconds N] [--write]`` prints a markdown table;
``--write`` also puts it in BENCHMARKS.md (section ``codec``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from sections import replace_section

from arete.payloads import Gpu, Metrics, Mount, Sample, decode_metrics, encode


@dataclass(frozen=True)
class Case:
    label: str
    message: Metrics

    @property
    def data(self) -> bytes:
        return encode(self.message)


def make_sample(rng: random.Random, *, seq: int, cores: int, mounts: int, temps: int,
                gpus: int) -> Sample:  # fmt: skip
    cpus = [round(rng.uniform(0, 100), 1) for _ in range(cores)]
    disks = [
        Mount(point, total, used, round(used / total * 100, 1))
        for point in ["/", "/home", "/var", "/srv/data", "/boot"][:mounts]
        for total in [rng.randrange(2**33, 2**41)]
        for used in [rng.randrange(0, total)]
    ]
    return Sample(
        ts=1_760_000_000.0 + seq + rng.random() / 10,
        seq=seq,
        cpu=round(sum(cpus) / cores, 1),
        cpus=cpus,
        load=(round(rng.uniform(0, cores), 2), round(rng.uniform(0, cores), 2), 0.42),
        mem=round(rng.uniform(5, 95), 1),
        mem_used=rng.randrange(2**30, 2**34),
        mem_total=2**35,
        swap=round(rng.uniform(0, 10), 1),
        disk=max((m.pct for m in disks), default=0.0),
        mounts=disks,
        disk_read_bps=round(rng.uniform(0, 5e7), 1),
        disk_write_bps=round(rng.uniform(0, 5e7), 1),
        disk_read_iops=round(rng.uniform(0, 900), 1),
        disk_write_iops=round(rng.uniform(0, 900), 1),
        net_rx_bps=round(rng.uniform(0, 1e8), 1),
        net_tx_bps=round(rng.uniform(0, 1e8), 1),
        uptime_s=round(rng.uniform(1e3, 1e7), 1),
        procs=rng.randrange(80, 900),
        temps={f"coretemp/Core {i}": round(rng.uniform(30, 90), 1) for i in range(temps)} or None,
        gpu=[
            Gpu(i, "NVIDIA A100-SXM4-80GB", 87.0, 2**35, 80 * 2**30, 61.0, 312.5)
            for i in range(gpus)
        ]
        or None,
    )


def cases() -> list[Case]:
    rng = random.Random(42)
    shapes = [
        ("2 cores, 1 mount (small VM)", 2, 1, 0, 0, 1),
        ("8 cores, 3 mounts, 5 temps (desktop)", 8, 3, 5, 0, 1),
        ("32 cores, 4 mounts, 17 temps, 2 GPUs (server)", 32, 4, 17, 2, 1),
        ("replay batch: 60 samples of 8 cores", 8, 3, 5, 0, 60),
    ]
    built = []
    for label, cores, mounts, temps, gpus, count in shapes:
        samples = [
            make_sample(rng, seq=100 + i, cores=cores, mounts=mounts, temps=temps, gpus=gpus)
            for i in range(count)
        ]
        message = Metrics(epoch=7, seq=100, samples=samples, replay=count > 1)
        built.append(Case(label, message))
    return built


# -- json.loads + the same checks, by hand ------------------------------------------------
class InvalidError(ValueError):
    pass


def _num(value: Any, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidError(value)
    return float(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidError(value)
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 256:
        raise InvalidError(value)
    return value


_RATES = ("disk_read_bps", "disk_write_bps", "disk_read_iops", "disk_write_iops",
          "net_rx_bps", "net_tx_bps", "uptime_s")  # fmt: skip


def _check_sample(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise InvalidError(raw)
    _num(raw["ts"])
    _int(raw["seq"])
    _num(raw["cpu"], 0, 100)
    _num(raw["mem"], 0, 100)
    for pct in raw.get("cpus", []):
        _num(pct, 0, 100)
    load = raw.get("load")
    if load is not None:
        if not isinstance(load, list) or len(load) != 3:
            raise InvalidError(load)
        for value in load:
            _num(value, -math.inf)
    for key in ("mem_used", "mem_total", "procs"):
        _int(raw.get(key, 0))
    _num(raw.get("swap", 0.0), 0, 100)
    _num(raw.get("disk", 0.0), 0, 100)
    for key in _RATES:
        _num(raw.get(key, 0.0))
    for mount in raw.get("mounts", []):
        _str(mount["mount"])
        _int(mount["total"])
        _int(mount["used"])
        _num(mount["pct"], 0, 100)
    for name, value in (raw.get("temps") or {}).items():
        _str(name)
        _num(value, -math.inf)
    for gpu in raw.get("gpu") or []:
        _int(gpu["index"])
        _str(gpu["name"])
        _num(gpu.get("util", 0), 0, 100)


def json_with_checks(data: bytes) -> dict[str, Any]:
    raw = json.loads(data)
    if not isinstance(raw, dict) or raw.get("schema") != 1:
        raise InvalidError(raw)
    _int(raw["epoch"])
    _int(raw["seq"])
    samples = raw["samples"]
    if not isinstance(samples, list) or not 1 <= len(samples) <= 10_000:
        raise InvalidError(samples)
    for sample in samples:
        _check_sample(sample)
    return raw


# -- pydantic, when installed -------------------------------------------------------------
Codec = Callable[[Any], Any]


def pydantic_codecs() -> tuple[Codec, Callable[[bytes], Any]] | None:
    """(encode, decode) with pydantic v2 models equivalent to the msgspec ones, or None."""
    try:
        from typing import Annotated

        import pydantic
        from pydantic import BaseModel, ConfigDict, Field
    except ImportError:
        return None

    frozen = ConfigDict(frozen=True)
    pct = Annotated[float, Field(ge=0, le=100)]
    nonneg = Annotated[float, Field(ge=0)]
    count = Annotated[int, Field(ge=0)]
    short = Annotated[str, Field(max_length=256)]

    class PMount(BaseModel):
        model_config = frozen
        mount: short
        total: count
        used: count
        pct: pct

    class PGpu(BaseModel):
        model_config = frozen
        index: count
        name: short
        util: pct | None = None
        mem_used: count | None = None
        mem_total: count | None = None
        temp: float | None = None
        power_w: nonneg | None = None

    class PSample(BaseModel):
        model_config = frozen
        ts: nonneg
        seq: count
        cpu: pct
        cpus: list[pct] = []
        load: tuple[float, float, float] | None = None
        mem: pct
        mem_used: count = 0
        mem_total: count = 0
        swap: pct = 0.0
        disk: pct = 0.0
        mounts: list[PMount] = []
        disk_read_bps: nonneg = 0.0
        disk_write_bps: nonneg = 0.0
        disk_read_iops: nonneg = 0.0
        disk_write_iops: nonneg = 0.0
        net_rx_bps: nonneg = 0.0
        net_tx_bps: nonneg = 0.0
        uptime_s: nonneg = 0.0
        procs: count = 0
        temps: dict[short, float] | None = None
        gpu: list[PGpu] | None = None

    class PMetrics(BaseModel):
        model_config = frozen
        schema_: int = Field(1, alias="schema")
        epoch: count
        seq: count
        samples: Annotated[list[PSample], Field(min_length=1, max_length=10_000)]
        replay: bool = False
        dropped: count = 0

    del pydantic  # imported only to fail early when absent

    def dump(model: Any) -> bytes:
        return bytes(model.model_dump_json(by_alias=True, exclude_defaults=True), "utf-8")

    return dump, PMetrics.model_validate_json


def pydantic_version() -> str:
    try:
        from pydantic import VERSION
    except ImportError:
        return ""
    return f", pydantic {VERSION}"


# -- measuring ----------------------------------------------------------------------------
def per_second(call: Callable[[], object], seconds: float) -> float:
    """Calls per second: the best of three rounds, so a noisy neighbour costs less."""
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while (now := time.perf_counter()) < deadline:
            for _ in range(50):
                call()
            calls += 50
        best = max(best, calls / (now - start))
    return best


def fmt_rate(rate: float) -> str:
    return f"{rate / 1000:,.1f} k" if rate >= 1000 else f"{rate:,.0f}"


def cell(rate: float, base: float) -> str:
    return f"{fmt_rate(rate)} ({rate / base:.2f}x)"


def measure(
    case: Case, seconds: float, pyd: tuple[Codec, Callable[[bytes], Any]] | None
) -> tuple[list[float], list[float]]:
    """(decode rates, encode rates) of one payload; the stdlib baseline comes first."""
    data = case.data
    as_dict = msgspec.to_builtins(case.message)
    # Every codec reads the same content, so the comparison is fair.
    assert json.loads(encode(decode_metrics(data))) == json.loads(data)
    json_with_checks(data)
    decoders: list[Callable[[], object]] = [
        lambda: json.loads(data),
        lambda: decode_metrics(data),
        lambda: json_with_checks(data),
    ]
    encoders: list[Callable[[], object]] = [
        lambda: json.dumps(as_dict, separators=(",", ":")).encode(),
        lambda: encode(case.message),
    ]
    if pyd:
        dump, load = pyd
        model = load(data)
        assert decode_metrics(dump(model)) == decode_metrics(data)
        decoders.append(lambda: load(data))
        encoders.append(lambda: dump(model))
    return (
        [per_second(call, seconds) for call in decoders],
        [per_second(call, seconds) for call in encoders],
    )


def run(seconds: float) -> str:
    pyd = pydantic_codecs()
    decode_cols = ["json.loads (no validation)", "msgspec typed", "json.loads + hand checks"]
    encode_cols = ["json.dumps", "msgspec"]
    if pyd:
        decode_cols.append("pydantic v2")
        encode_cols.append("pydantic v2")
    decode_rows, encode_rows = [], []
    vs_json: list[float] = []
    vs_hand: list[float] = []
    for case in cases():
        dec, enc = measure(case, seconds, pyd)
        size = f"{len(case.data):,}"
        decode_rows.append([case.label, size, *(cell(r, dec[0]) for r in dec)])
        vs_json.append(dec[1] / dec[0])
        vs_hand.append(dec[1] / dec[2])
        encode_rows.append([case.label, size, *(cell(r, enc[0]) for r in enc)])
    return "\n".join(
        [
            "## Metrics codec (`bench/codec.py`)",
            "",
            f"Messages per second on one core; in brackets the ratio to the stdlib baseline of "
            f"the same run. Python {platform.python_version()}, msgspec {msgspec.__version__}"
            f"{pydantic_version()}, "
            f"{seconds:g} s per measurement (best of 3 rounds), {time.strftime('%Y-%m-%d')}.",
            "",
            "**Decode** (what the maestro does for every message):",
            "",
            *table(["payload", "bytes", *decode_cols], decode_rows),
            "",
            "**Encode** (what an agent does once a second):",
            "",
            *table(["payload", "bytes", *encode_cols], encode_rows),
            "",
            f"msgspec validates every field while decoding (types, ranges, lengths, schema) and"
            f" is still {min(vs_json):.1f}-{max(vs_json):.1f}x as fast as `json.loads` that checks"
            f" nothing, and {min(vs_hand):.1f}-{max(vs_hand):.1f}x as fast as `json.loads` with"
            f" the same checks written by hand.",
        ]
    )


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    report = run(args.seconds)
    print(report)
    if args.write:
        print(f"\nwritten to {replace_section('codec', report)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
