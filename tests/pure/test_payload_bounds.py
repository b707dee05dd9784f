"""Number bounds of the contract: no value a store, a clock or a browser cannot hold.

One message with ``seq`` 2**63 once stopped the maestro's SQLite writer for the whole
fleet; these pin that every number is refused at decode time, with a clear reason,
before it can reach a store (docs/topics.md, "Number bounds").
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from arete.errors import PayloadError
from arete.payloads import (
    MAX_FUTURE_S,
    MAX_INT64,
    MAX_PAST_S,
    MAX_SAFE_INT,
    MAX_TS,
    decode_heartbeat,
    decode_metrics,
    decode_status,
    sample_time_fault,
)

NOW = 1_764_050_000.0


def sample(**changes: Any) -> dict[str, Any]:
    return {"ts": NOW, "seq": 1, "cpu": 10.0, "mem": 20.0, **changes}


def metrics(epoch: int = 1, **changes: Any) -> bytes:
    return json.dumps({"epoch": epoch, "seq": 1, "samples": [sample(**changes)]}).encode()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seq": 2**63}, "seq"),
        ({"seq": 2**64 + 5}, "seq"),
        ({"seq": MAX_SAFE_INT + 1}, "seq"),
        ({"ts": 4_200_000_000.0}, "ts"),  # year 2103
        ({"ts": 1e300}, "ts"),
        ({"ts": -1.0}, "ts"),
        ({"mem_used": 2**63}, "mem_used"),
        ({"procs": 2**62}, "procs"),
        ({"net_rx_bps": 1e300}, "net_rx_bps"),
        ({"uptime_s": 1e16}, "uptime_s"),
        ({"load": [1e300, 0, 0]}, "load"),
        ({"temps": {"cpu": 1e300}}, "temps"),
        ({"gpu": [{"index": 0, "name": "g", "power_w": 1e200}]}, "power_w"),
        ({"gpu": [{"index": 2**63, "name": "g"}]}, "index"),
        ({"mounts": [{"mount": "/", "total": 2**64, "used": 0, "pct": 1.0}]}, "total"),
        ({"cpu": 100.5}, "cpu"),
    ],
)
def test_a_sample_number_beyond_its_bound_is_refused_with_its_path(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_metrics(metrics(**changes))
    assert caught.value.code == "schema"
    assert field in str(caught.value)


@pytest.mark.parametrize("text", [b"1e999", b"-1e999", b"NaN", b"Infinity"])
def test_infinities_and_nan_never_decode(text: bytes) -> None:
    data = metrics().replace(b'"cpu": 10.0', b'"cpu": ' + text)
    with pytest.raises(PayloadError):
        decode_metrics(data)


def test_the_largest_values_in_bounds_are_taken() -> None:
    decoded = decode_metrics(
        metrics(
            epoch=MAX_SAFE_INT,
            seq=MAX_SAFE_INT,
            ts=MAX_TS,
            mem_used=MAX_INT64,
            temps={"broken sensor": 65_261.85},
            load=[1000.0, 900.0, 800.0],
        )
    )
    assert decoded.samples[0].seq == MAX_SAFE_INT
    assert decoded.samples[0].mem_used == MAX_INT64


@pytest.mark.parametrize("field", ["epoch", "seq"])
def test_heartbeat_counters_are_bounded(field: str) -> None:
    beat = {"epoch": 1, "seq": 1, "ts": NOW, field: 2**62}
    with pytest.raises(PayloadError, match=field):
        decode_heartbeat(json.dumps(beat).encode())


def test_metrics_epoch_and_status_epoch_are_bounded() -> None:
    with pytest.raises(PayloadError, match="epoch"):
        decode_metrics(metrics(epoch=2**62))
    status = {
        "state": "online",
        "epoch": 2**62,
        "ts": NOW,
        "version": "1",
        "host": "h",
        "heartbeat_s": 5.0,
    }
    with pytest.raises(PayloadError, match="epoch"):
        decode_status(json.dumps(status).encode())


def test_a_sample_time_is_judged_against_the_receivers_clock() -> None:
    assert sample_time_fault(NOW, NOW) is None
    assert sample_time_fault(NOW + 2 * 3600, NOW) is None, "an agent 2 h ahead is kept"
    assert sample_time_fault(NOW - 7 * 86_400, NOW) is None, "a week-old replay is kept"
    assert sample_time_fault(NOW + MAX_FUTURE_S + 1, NOW) == "ts_future"
    assert sample_time_fault(4_102_444_000.0, NOW) == "ts_future", "year 2100"
    assert sample_time_fault(NOW - MAX_PAST_S - 1, NOW) == "ts_past"
    assert sample_time_fault(0.0, NOW) == "ts_past"
