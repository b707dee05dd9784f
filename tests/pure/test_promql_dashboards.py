"""The Grafana dashboards for the Prometheus / VictoriaMetrics path: importable, and
reading only series the maestro's exporter produces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from arete.payloads import Gpu, Mount, Sample
from maestro.exporter import AgentView, fleet_families

FOLDER = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "prometheus"
DASHBOARDS = ["arete-fleet-promql.json", "arete-agent-promql.json"]
SERIES = re.compile(r"\b((?:arete_agent|node)_[A-Za-z0-9_]+)\b")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    return data


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    found += [
        var["query"]["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"
    ]
    return found


def exported_names() -> set[str]:
    sample = Sample(
        ts=1.0,
        seq=1,
        cpu=1.0,
        cpus=[1.0],
        load=(1.0, 1.0, 1.0),
        mem=1.0,
        mem_used=1,
        mem_total=2,
        swap=1.0,
        disk=1.0,
        mounts=[Mount("/", 2, 1, 50.0)],
        disk_read_bps=1.0,
        disk_write_bps=1.0,
        disk_read_iops=1.0,
        disk_write_iops=1.0,
        net_rx_bps=1.0,
        net_tx_bps=1.0,
        uptime_s=1.0,
        procs=1,
        temps={"cpu": 1.0},
        gpu=[Gpu(0, "g", 1.0, 1, 2, 1.0, 1.0)],
    )
    families = fleet_families([AgentView("a1", "online", {}, "h", "v", sample)])
    return {family.name for family in families}


def test_both_dashboards_are_shipped_with_a_readme() -> None:
    assert sorted(p.name for p in FOLDER.glob("*.json")) == sorted(DASHBOARDS)
    assert (FOLDER / "README.md").is_file()


@pytest.mark.parametrize("name", DASHBOARDS)
def test_a_dashboard_has_what_grafana_needs_to_import_it(name: str) -> None:
    dashboard = load(name)
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == name.removesuffix(".json")
    assert dashboard["id"] is None, "a fixed id would clash with an existing dashboard"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], f"panel {panel['title']!r} has no query"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_uses_the_chosen_prometheus_datasource(name: str) -> None:
    dashboard = load(name)
    source = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_read_only_series_the_exporter_produces(name: str) -> None:
    referenced = {found for expr in expressions(load(name)) for found in SERIES.findall(expr)}
    assert referenced, "no series found: did the query style change?"
    assert referenced <= exported_names(), referenced - exported_names()


def test_the_agent_dashboard_charts_every_per_agent_series() -> None:
    referenced = {
        found for expr in expressions(load(DASHBOARDS[1])) for found in SERIES.findall(expr)
    }
    missing = (
        exported_names() - referenced - {"arete_agent_info", "arete_agent_sample_timestamp_seconds"}
    )
    assert not missing, f"exported but not charted: {missing}"
