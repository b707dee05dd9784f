"""The Grafana dashboards for the InfluxDB path: importable, and true to what the sink writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from maestro.influx.settings import InfluxSettings
from maestro.store.rows import FIELDS

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
DASHBOARDS = ["arete-fleet.json", "arete-agent.json"]
FIELD_REFERENCE = re.compile(r"""r\._field\s*==\s*"([^"]*)"|r\["_field"\]\s*==\s*"([^"]*)\"""")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / name).read_text(encoding="utf-8"))
    return data


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [
        target["query"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "query" in target
    ]
    found += [var["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"]
    return found


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in dashboard["templating"]["list"]}


def test_the_fleet_and_agent_dashboards_are_shipped() -> None:
    assert sorted(path.name for path in GRAFANA.glob("*.json")) == sorted(DASHBOARDS)
    assert (GRAFANA / "README.md").is_file()


@pytest.mark.parametrize("name", DASHBOARDS)
def test_a_dashboard_has_what_grafana_needs_to_import_it(name: str) -> None:
    dashboard = load(name)
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == name.removesuffix(".json")
    assert dashboard["title"]
    assert dashboard["id"] is None, "a fixed id would clash with an existing dashboard"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], f"panel {panel['title']!r} has no query"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_uses_the_chosen_influxdb_datasource(name: str) -> None:
    dashboard = load(name)
    source = variables(dashboard)["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "influxdb")
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_read_only_fields_the_sink_writes(name: str) -> None:
    referenced = {
        first or second
        for query in queries(load(name))
        for first, second in FIELD_REFERENCE.findall(query)
    }
    assert referenced, "no field found: did the query style change?"
    assert referenced <= set(FIELDS), f"fields the sink never writes: {referenced - set(FIELDS)}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_read_the_sinks_bucket_measurement_and_agent_tag(name: str) -> None:
    dashboard = load(name)
    defaults = InfluxSettings()
    names = variables(dashboard)
    assert names["bucket"]["query"] == defaults.bucket
    assert names["measurement"]["query"] == defaults.measurement
    assert "agent" in names
    for query in queries(dashboard):
        assert 'bucket: "${bucket}"' in query
        assert 'r._measurement == "${measurement}"' in query
        assert "SELECT " not in query.upper(), "Flux only: InfluxDB 2 has no InfluxQL by default"


def test_the_fleet_picks_many_agents_and_the_detail_view_one() -> None:
    fleet, agent = variables(load("arete-fleet.json")), variables(load("arete-agent.json"))
    assert fleet["agent"]["multi"] is True
    assert fleet["agent"]["includeAll"] is True
    assert agent["agent"]["multi"] is False
    fleet_queries = [q for q in queries(load("arete-fleet.json")) if "r._field" in q]
    assert all("${agent:json}" in query for query in fleet_queries)
    agent_queries = [q for q in queries(load("arete-agent.json")) if "r._field" in q]
    assert all('r.agent == "${agent}"' in query for query in agent_queries)


def test_the_fleet_shows_cpu_memory_and_disk_per_agent() -> None:
    titles = {panel["title"] for panel in load("arete-fleet.json")["panels"]}
    assert {"CPU by agent", "Memory by agent", "Disk by agent (fullest mount)"} <= titles
