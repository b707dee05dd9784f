"""A browser page using MQTT.js (npm ``mqtt``) reads live metrics over websockets with
the viewer account, as a dashboard or phone app would."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.browser import CHROMIUM

MQTT_JS = (
    Path(__file__).resolve().parents[2] / "dashboards" / "web" / "node_modules" / "mqtt" / "dist"
) / "mqtt.min.js"

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(
        not MQTT_JS.exists(), reason="MQTT.js is not installed (npm ci in dashboards/web)"
    ),
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fleet over MQTT</title>
<script src="mqtt.min.js"></script></head>
<body>
<p>link: <span id="state">connecting</span></p>
<p>cpu: <span id="cpu">-</span> (sample <span id="seq">-</span>,
<span id="count">0</span> batches)</p>
<script>
const opts = new URLSearchParams(location.hash.slice(1));
const $ = (id) => document.getElementById(id);
let count = 0;
const client = mqtt.connect(opts.get("url"), {
  username: "viewer",
  password: opts.get("password"),
  clientId: opts.get("client"),
  protocolVersion: 5,
  reconnectPeriod: 0,
});
client.on("connect", () => {
  $("state").textContent = "connected";
  client.subscribe(opts.get("topic"), { qos: 1 });
});
client.on("error", (err) => { $("state").textContent = "refused: " + err.message; });
client.on("message", (topic, payload) => {
  const batch = JSON.parse(new TextDecoder().decode(payload));
  const newest = batch.samples[batch.samples.length - 1];
  $("cpu").textContent = newest.cpu.toFixed(1);
  $("seq").textContent = String(newest.seq);
  $("count").textContent = String(++count);
});
</script></body></html>
"""


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[str]:
    """A local web server for the page and MQTT.js (no CDN); its base URL."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    shutil.copy(MQTT_JS, root / "mqtt.min.js")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def _url(base: str, broker: Broker, client: str, topic: str) -> str:
    assert broker.ws_port is not None
    opts = {
        "url": f"ws://127.0.0.1:{broker.ws_port}",
        "password": broker.viewer_password,
        "client": client,
        "topic": topic,
    }
    return f"{base}/index.html#{urllib.parse.urlencode(opts)}"


def test_a_browser_page_with_mqtt_js_sees_live_metrics_as_the_viewer(
    browser: Browser,
    ws_broker: Broker,
    start_agent: Callable[..., AgentProc],
    page_server: str,
) -> None:
    start_agent("a1", config=ws_broker.add_agent("a1"), env={"ARETE_AGENT_INTERVAL_S": "0.5"})
    topic = ws_broker.topics.metrics("a1")
    page = browser.new_page()
    page.goto(_url(page_server, ws_broker, "viewer:browser", topic))
    expect(page.locator("#state")).to_have_text("connected", timeout=15_000)
    expect(page.locator("#cpu")).to_have_text(re.compile(r"^\d{1,3}\.\d$"), timeout=15_000)
    first = int(page.locator("#seq").inner_text())
    # Live: newer samples keep arriving.
    page.wait_for_function(
        f"Number(document.getElementById('seq').textContent) > {first}", timeout=15_000
    )
    cpu = float(page.locator("#cpu").inner_text())
    assert 0.0 <= cpu <= 100.0

    # The broker holds the viewer to its own client ids: an agent's id is refused.
    other = browser.new_page()
    other.goto(_url(page_server, ws_broker, "a1", topic))
    expect(other.locator("#state")).to_contain_text("refused", timeout=15_000)
