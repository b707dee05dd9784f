"""The maestro's /metrics port as a scraper sees it: one text document (the maestro's series
then the fleet's), gzip when asked, ``name[]`` selections, and the fleet's cache."""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

OPENMETRICS_FIRST = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def _get(port: int, query: str = "", gzipped: bool = False) -> tuple[dict[str, str], str]:
    headers = {"Accept": OPENMETRICS_FIRST}  # what Prometheus sends by default
    if gzipped:
        headers["Accept-Encoding"] = "gzip"
    url = f"http://127.0.0.1:{port}/metrics{query}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body = r.read()
        got = {k.lower(): v for k, v in r.headers.items()}
    if got.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return got, body.decode()


def _families(text: str) -> dict[str, set[str]]:
    """Family name -> the agents in its samples; fails if a family is split in two."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"{family.name} appears twice"
        out[family.name] = {s.labels.get("agent", "") for s in family.samples}
    return out


def test_one_scrape_has_the_maestros_and_the_fleets_series_gzipped_and_selectable(
    start_agent: Callable[..., AgentProc], start_maestro: Callable[..., MaestroProc]
) -> None:
    maestro = start_maestro(env={"ARETE_MAESTRO_EXPORTER_CACHE_S": "0"})
    start_agent("a1")
    port = maestro.metrics_port

    def cpu_seen() -> bool:
        return "a1" in _families(_get(port)[1]).get("arete_agent_cpu_percent", set())

    wait_for(cpu_seen, 20, "a1's CPU on /metrics", step=0.3)
    headers, text = _get(port, gzipped=True)
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"].startswith("text/plain")  # never OpenMetrics: one format
    assert "# EOF" not in text
    families = _families(text)
    assert {"arete_maestro_samples", "arete_maestro_agents"} <= set(families)
    assert families["arete_agent_up"] == {"a1"}
    assert families["node_load1"] == {"a1"}

    _, own = _get(port, "?name[]=arete_maestro_samples_total")
    assert set(_families(own)) == {"arete_maestro_samples"}
    _, picked = _get(
        port, "?name[]=arete_agent_up&name[]=node_load1&name[]=arete_maestro_samples_total"
    )
    assert set(_families(picked)) == {"arete_agent_up", "node_load1", "arete_maestro_samples"}

    assert httpx.post(f"http://127.0.0.1:{port}/metrics").status_code == 405


def test_the_fleets_series_are_reused_for_the_cache_window_the_maestros_are_not(
    start_agent: Callable[..., AgentProc], start_maestro: Callable[..., MaestroProc]
) -> None:
    maestro = start_maestro(env={"ARETE_MAESTRO_EXPORTER_CACHE_S": "300"})
    port = maestro.metrics_port
    assert "arete_agent_up" not in _families(_get(port)[1])  # no agent yet: rendered, cached
    start_agent("a1")

    def counted() -> bool:
        return 'arete_maestro_agents{state="online"} 1.0' in _get(port)[1]

    wait_for(counted, 20, "a1 counted online by the maestro's own series", step=0.3)
    _, text = _get(port)
    assert "arete_agent_up" not in _families(text)  # the fleet's text is the cached one
    assert "arete_maestro_exporter_renders_total 1.0\n" in text  # however many scrapes


def test_the_web_apis_metrics_select_series_by_name_too(
    start_agent: Callable[..., AgentProc], api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    start_agent("a1")
    viewer = api.client(Role.VIEWER)
    wanted = {"name[]": ["arete_agent_up", "arete_maestro_samples_total"]}

    def picked() -> dict[str, set[str]]:
        answer = viewer.get("/metrics", params=wanted)
        assert answer.status_code == 200, answer.text
        return _families(answer.text)

    def seen() -> bool:
        return picked().get("arete_agent_up") == {"a1"}

    wait_for(seen, 20, "a1 on the API's /metrics", step=0.5)
    assert set(picked()) == {"arete_agent_up", "arete_maestro_samples"}
