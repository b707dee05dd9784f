"""Debian's real Prometheus scrapes the maestro and answers PromQL about an agent."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.procs import Proc, free_port, wait_for
from web_api.auth.roles import Role

PROMETHEUS = shutil.which("prometheus")


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _dashboard_queries() -> list[str]:
    folder = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "prometheus"
    found = []
    for path in sorted(folder.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        found += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert found
    return found


@pytest.fixture
def prometheus(tmp_path: Path, procs: Callable[..., Proc]) -> Callable[..., int]:
    """Start ``prometheus`` scraping 127.0.0.1:TARGET every second; its HTTP port."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")

    def start(target: int, token: str | None = None) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        auth = ""
        if token is not None:  # the web API's /metrics: a bearer token, from a 0600 file
            token_file = tmp_path / "arete.token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            auth = f"    authorization:\n      credentials_file: {token_file}\n"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: arete\n"
            + auth
            + f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        )
        proc = procs(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            "prometheus",
        )

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"prometheus exited:\n{proc.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(ready, 30, "prometheus ready")
        return port

    return start


def test_prometheus_gets_an_agents_cpu_and_liveness_back_through_promql(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    prometheus: Callable[..., int],
) -> None:
    maestro = start_maestro()
    config = broker.add_agent("a1", label=["role=web", "site=paris"])
    agent = start_agent("a1", config=config)
    port = prometheus(maestro.metrics_port)
    found: list[dict[str, Any]] = []

    def cpu_scraped() -> bool:
        found[:] = _query(port, 'arete_agent_cpu_percent{agent="a1"}')
        return bool(found)

    wait_for(cpu_scraped, 40, "the agent's CPU in Prometheus", step=0.5)
    series = found[0]
    assert series["metric"]["role"] == "web"
    assert series["metric"]["site"] == "paris"
    assert series["metric"]["job"] == "arete"
    assert 0.0 <= float(series["value"][1]) <= 100.0
    up = _query(port, 'arete_agent_up{agent="a1"}')
    assert [float(s["value"][1]) for s in up] == [1.0]
    load = _query(port, 'node_load1{agent="a1", role="web"}')
    assert len(load) == 1
    assert float(load[0]["value"][1]) >= 0.0
    by_role = _query(port, "avg by (role) (arete_agent_cpu_percent)")
    assert [s["metric"] for s in by_role] == [{"role": "web"}]

    # Every query of the PromQL dashboards parses and runs; the main panels have data.
    for expr in _dashboard_queries():
        answer = _query(port, expr.replace("$agent", "a1"))
        if any(name in expr for name in ("cpu_percent", "memory_used_percent", "node_load1")):
            assert answer, f"no data for the dashboard query {expr!r}"

    agent.proc.stop()  # a clean stop: offline at once

    def offline_and_stale() -> bool:
        ups = _query(port, 'arete_agent_up{agent="a1"}')
        cpu = _query(port, 'arete_agent_cpu_percent{agent="a1"}')
        return [float(s["value"][1]) for s in ups] == [0.0] and cpu == []

    wait_for(offline_and_stale, 30, "up 0 and no CPU series once the agent is offline", step=0.5)


def test_prometheus_scrapes_the_fleet_from_the_web_api_with_a_viewer_token(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    api_server: Callable[..., ApiServer],
    prometheus: Callable[..., int],
) -> None:
    api = api_server()
    start_agent("a1")
    port = prometheus(api.port, token=api.tokens[Role.VIEWER])

    def scraped() -> bool:
        return bool(_query(port, 'arete_agent_cpu_percent{agent="a1"}'))

    wait_for(scraped, 40, "the agent's CPU through the web API's /metrics", step=0.5)
    health = _query(port, 'up{job="arete"}')
    assert [float(s["value"][1]) for s in health] == [1.0]
