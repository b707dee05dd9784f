"""Line protocol of stored sample rows: what InfluxDB (and VictoriaMetrics) will read."""

from __future__ import annotations

import math
import re
import time

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from maestro.influx.lineproto import LineEncoder, encode_rows
from maestro.store.rows import FIELDS, SampleRow


def row(agent: str = "web-1", ts: float = 1_700_000_000.123, **values: object) -> SampleRow:
    return (agent, 7, ts, 1, *(values.get(name) for name in FIELDS))


def test_a_row_becomes_one_line_with_agent_tag_fields_and_ms_timestamp() -> None:
    line = LineEncoder("arete").line(row(cpu=12.5, mem=40.25, procs=312))
    assert line == "arete,agent=web-1 cpu=12.5,mem=40.25,procs=312 1700000000123"


def test_none_fields_are_left_out_and_a_row_without_fields_has_no_line() -> None:
    encoder = LineEncoder("arete")
    assert encoder.line(row(cpu=None, disk=71.0)) == "arete,agent=web-1 disk=71.0 1700000000123"
    assert encoder.line(row()) is None
    assert encoder.lines([row(), row(cpu=1.0), row()]) == [
        "arete,agent=web-1 cpu=1.0 1700000000123"
    ]


def test_integers_are_written_as_floats_so_a_field_never_changes_type() -> None:
    line = LineEncoder("arete").line(row(procs=312, cpu=0))
    assert line is not None
    assert "procs=312 " in line or "procs=312," in line
    assert not re.search(r"=\d+i\b", line), "an 'i' suffix would make the field an integer"


def test_nan_and_infinities_are_left_out() -> None:
    encoder = LineEncoder("arete")
    line = encoder.line(row(cpu=math.nan, mem=math.inf, disk=-math.inf, swap=3.5))
    assert line == "arete,agent=web-1 swap=3.5 1700000000123"
    assert encoder.line(row(cpu=math.nan)) is None


def test_a_row_with_a_timestamp_that_is_not_finite_is_skipped() -> None:
    assert LineEncoder("arete").line(row(ts=math.inf, cpu=1.0)) is None


def test_measurement_and_tag_values_are_escaped() -> None:
    line = LineEncoder("my fleet,eu").line(row(agent="a b,c=d", cpu=1.0))
    assert line == r"my\ fleet\,eu,agent=a\ b\,c\=d cpu=1.0 1700000000123"


def test_an_equal_sign_in_the_measurement_is_kept_as_is() -> None:
    # Line protocol escapes only commas and spaces in a measurement.
    assert encode_rows([row(cpu=1.0)], "a=b") == ["a=b,agent=web-1 cpu=1.0 1700000000123"]


def test_milliseconds_are_rounded_not_truncated() -> None:
    assert encode_rows([row(ts=1.0006, cpu=1.0)], "m")[0].endswith(" 1001")
    assert encode_rows([row(ts=2.9999, cpu=1.0)], "m")[0].endswith(" 3000")


def _split(line: str) -> tuple[str, set[str], str]:
    head, fields, ts = line.rsplit(" ", 2)
    # influxdb-client trims a trailing ".0"; both spellings are the same float.
    return head, {re.sub(r"\.0$", "", field) for field in fields.split(",")}, ts


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    agent=st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    measurement=st.text(st.characters(codec="utf-8"), min_size=1, max_size=10).filter(
        lambda m: not m.startswith("#")
    ),
    values=st.lists(st.one_of(st.none(), _finite), min_size=len(FIELDS), max_size=len(FIELDS)),
    ts_ms=st.integers(min_value=0, max_value=4_000_000_000_000),
)
def test_lines_say_what_influxdb_clients_own_point_encoder_says(
    agent: str, measurement: str, values: list[float | None], ts_ms: int
) -> None:
    stored = (agent, 1, ts_ms / 1000, 1, *values)
    ours = LineEncoder(measurement).line(stored)
    point = Point(measurement).tag("agent", agent).time(ts_ms, WritePrecision.MS)  # type: ignore[no-untyped-call]
    for name, value in zip(FIELDS, values, strict=True):
        point.field(name, value)
    theirs = point.to_line_protocol()
    if not theirs:
        assert ours is None
        return
    assert ours is not None
    assert _split(ours) == _split(theirs)


def test_encoding_is_fast_enough_for_the_ingest_hot_path() -> None:
    rows = [
        (f"agent-{i % 50}", i, 1_700_000_000 + i / 1000, 3, *(float(i % 97) + 0.5 for _ in FIELDS))
        for i in range(20_000)
    ]
    encoder = LineEncoder("arete")
    started = time.perf_counter()
    lines = encoder.lines(rows)
    elapsed = time.perf_counter() - started
    assert len(lines) == len(rows)
    # Measured about 250k lines/s on a slow 2-core box; 20k/s is the floor that matters.
    assert len(rows) / elapsed > 20_000
