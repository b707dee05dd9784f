"""``arete up`` serves MQTT over websockets on loopback for browsers and apps."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.procs import Proc, free_port, wait_for
from tests.real.test_broker_websockets import listening_addresses, ws_status_of


def test_up_serves_the_viewer_over_websockets_on_loopback_only(
    procs: Callable[..., Proc], tmp_path: Path
) -> None:
    data_dir, ws_port = tmp_path / "data", free_port()
    argv = [sys.executable, "-m", "arete_cli", "up", "--data-dir", str(data_dir)]
    argv += ["--mqtt-port", str(free_port()), "--http-port", str(free_port())]
    argv += ["--agent-id", "this-pc", "--ws-port", str(ws_port)]
    up = procs(argv, "up-ws", env={"ARETE_AGENT_INTERVAL_S": "0.5"})
    wait_for(lambda: "mosquitto_sub" in up.output(), 60, "the banner")
    assert f"ws://127.0.0.1:{ws_port}" in up.output()
    assert listening_addresses(ws_port) == {"127.0.0.1"}
    viewer_password = (data_dir / "secrets" / "viewer.password").read_text().strip()
    status = ws_status_of(ws_port, viewer_password, "arete/status/this-pc")
    assert status["state"] == "online"
