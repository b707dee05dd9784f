"""The sink's counters as Prometheus metrics, and a sink without a URL refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from maestro.errors import ConfigError
from maestro.influx import InfluxSettings, InfluxSink


def test_a_sink_without_a_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"influx\.url"):
        InfluxSink(InfluxSettings(), tmp_path / "maestro.db")


def test_the_sink_counters_are_exposed_to_prometheus(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = InfluxSink(InfluxSettings(url="http://127.0.0.1:8086"), tmp_path / "m.db", registry)
    sink.stats = replace(
        sink.stats,
        lines_written=1200,
        write_errors=3,
        spool_lines=40,
        spool_rows=2,
        dropped_lines=7,
        up=False,
    )
    value = registry.get_sample_value
    assert value("arete_influx_lines_written_total") == 1200
    assert value("arete_influx_write_errors_total") == 3
    assert value("arete_influx_dropped_lines_total") == 7
    assert value("arete_influx_spool_lines") == 40
    assert value("arete_influx_spool_rows") == 2
    assert value("arete_influx_up") == 0
