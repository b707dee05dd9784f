"""Two Prometheus servers scraping the maestro back to back while a fleet sends: nothing
is lost, and the fleet's series are rendered once per ``exporter_cache_s``, not once per
scrape (a render holds the GIL the MQTT ingest needs: docs/prometheus.md)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.conftest import Reliability
from tests.fixtures.broker import Broker
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.procs import REPO, Proc

AGENTS = 1_000
LOAD_S = 15.0
CACHE_S = 5.0
STORED = (
    "SELECT a.name, count(*), count(DISTINCT s.seq), max(s.seq) FROM samples AS s"
    " JOIN agents AS a ON a.id = s.agent_id WHERE a.name LIKE 'lg%' GROUP BY s.agent_id"
)


class Scraper(threading.Thread):
    """One Prometheus server: full gzip scrapes, one after the other, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stopping = threading.Event()
        self.scrapes = 0
        self.errors: list[str] = []
        self.last = ""

    def run(self) -> None:
        with httpx.Client(timeout=30, headers={"Accept-Encoding": "gzip"}) as client:
            while not self.stopping.is_set():
                try:
                    answer = client.get(self.url)  # decompressed by httpx
                    answer.raise_for_status()
                    assert answer.headers["content-encoding"] == "gzip"
                    self.last = answer.text
                    self.scrapes += 1
                except (httpx.HTTPError, AssertionError) as exc:
                    self.errors.append(repr(exc))
                    time.sleep(0.2)


def _value(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in the scrape")


def test_two_scrapers_back_to_back_lose_no_sample_and_render_once_per_window(
    broker: Broker,
    start_maestro: Callable[..., MaestroProc],
    procs: Callable[..., Proc],
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    maestro = start_maestro(env={"ARETE_MAESTRO_EXPORTER_CACHE_S": str(CACHE_S)})
    report = tmp_path / "sent.json"
    load = procs(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            *("--port", str(broker.port), "--root", broker.root),
            *("--password-file", str(broker.data_dir / "secrets" / "maestro.password")),
            *("--agents", str(AGENTS), "--duration", str(LOAD_S), "--workers", "1"),
            *("--start-delay", "1", "--report", str(report)),
        ],
        "loadgen",
    )
    scrapers = [Scraper(maestro.metrics_port) for _ in range(2)]
    began = time.monotonic()
    for scraper in scrapers:
        scraper.start()
    load.wait(LOAD_S + 60)
    for scraper in scrapers:
        scraper.stopping.set()
        scraper.join(60)
    scraping_s = time.monotonic() - began
    sent = json.loads(report.read_text())["sent"]
    assert sum(sent) >= AGENTS * (LOAD_S - 2), f"the load was not offered:\n{load.output()}"
    expected = {f"lg{index:06d}": count for index, count in enumerate(sent)}
    after_load = time.monotonic()
    rows: dict[str, tuple[int, int, int]] = {}

    def all_stored() -> bool:
        rows.clear()
        rows.update(
            {name: (n, distinct, last) for name, n, distinct, last in maestro.query(STORED)}
        )
        return all(rows.get(name, (0, 0, 0))[1] >= count for name, count in expected.items())

    while not all_stored() and time.monotonic() - after_load < 30:
        time.sleep(0.5)
    caught_up_s = time.monotonic() - after_load
    lost = sum(max(0, count - rows.get(name, (0, 0, 0))[1]) for name, count in expected.items())
    duplicates = sum(n - distinct for n, distinct, _ in rows.values())

    scrapes = sum(s.scrapes for s in scrapers)
    assert not any(s.errors for s in scrapers), [s.errors[:3] for s in scrapers]
    assert scrapes >= 4, f"only {scrapes} scrapes in {scraping_s:.0f} s"
    last = scrapers[0].last
    up = {
        s.labels["agent"]
        for family in text_string_to_metric_families(last)
        if family.name == "arete_agent_up"
        for s in family.samples
    }
    assert len({name for name in up if name.startswith("lg")}) == AGENTS
    renders = _value(last, "arete_maestro_exporter_renders_total")
    render_s = _value(last, "arete_maestro_exporter_render_seconds")
    windows = scraping_s / CACHE_S
    assert renders <= windows + 2, f"{renders:.0f} renders for {scrapes} scrapes"
    assert renders < scrapes
    assert caught_up_s < 20, f"the store was {caught_up_s:.1f} s behind after the load"
    reliability.record(
        f"two Prometheus scrapers back to back on {AGENTS:,} agents x 1 Hz for {LOAD_S:.0f} s",
        lost=lost,
        duplicates=duplicates,
        notes=f"{scrapes} full scrapes, {renders:.0f} fleet renders (cache {CACHE_S:.0f} s, "
        f"newest {render_s * 1000:.0f} ms CPU); store caught up {caught_up_s:.1f} s after "
        "the last send",
    )
    assert lost == 0
    assert duplicates == 0
