"""``arete up``: one command runs the broker and a local agent; Ctrl-C stops both."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from arete.payloads import AgentState, decode_metrics, decode_status
from arete.topics import Topics
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import Proc, free_port, port_open, wait_for


def start_up(
    procs: Callable[..., Proc], data_dir: Path, port: int, name: str, http_port: int = 0
) -> Proc:
    return procs(
        [
            sys.executable,
            "-m",
            "arete_cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--mqtt-port",
            str(port),
            "--http-port",
            str(http_port or free_port()),
            "--agent-id",
            "this-pc",
            "--ws-port",
            str(free_port()),
        ],
        name,
        env={"ARETE_AGENT_INTERVAL_S": "0.5"},
    )


def assert_banner_command_watches_the_fleet(banner: str) -> None:
    """The printed mosquitto_sub line works as printed, and has no password in it."""
    line = next(x.strip() for x in banner.splitlines() if "mosquitto_sub" in x)
    assert " -P " not in line, line
    assert "password" not in line, line
    done = subprocess.run(
        ["sh", "-c", line + " -C 1 -W 20"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(Topics().root + "/"), done.stdout


def test_up_runs_broker_and_local_agent_and_ctrl_c_stops_both(
    procs: Callable[..., Proc], mqtt: Callable[..., MqttProbe], tmp_path: Path
) -> None:
    data_dir, port, http_port = tmp_path / "data", free_port(), free_port()
    up = start_up(procs, data_dir, port, "up-1", http_port)
    wait_for(lambda: "mosquitto_sub" in up.output(), 60, "the banner")
    banner = up.output()
    assert f"127.0.0.1:{port}" in banner
    assert_banner_command_watches_the_fleet(banner)
    assert f"http://127.0.0.1:{http_port}/" in banner
    password = re.search(r"one-time password\s+(\S+)", banner)
    assert password is not None, banner
    login = httpx.post(
        f"http://127.0.0.1:{http_port}/auth/login",
        json={"username": "admin", "password": password[1]},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    assert login.json()["must_change_password"] is True, "the printed password is one-time"
    assert (
        httpx.get(
            f"http://127.0.0.1:{http_port}/agents", cookies=login.cookies, timeout=10
        ).status_code
        == 403
    )
    login = httpx.post(
        f"http://127.0.0.1:{http_port}/auth/password",
        json={"current_password": password[1], "new_password": "chosen-at-first-login"},
        cookies=login.cookies,
        timeout=10,
    )
    assert login.status_code == 200, login.text
    assert (data_dir / "maestro-signing.pub").exists(), "commands are signed from the start"

    viewer_password = (data_dir / "secrets" / "viewer.password").read_text().strip()
    topics = Topics()
    probe = mqtt("viewer", viewer_password, port=port)
    probe.subscribe(topics.status("this-pc"))
    probe.subscribe(topics.metrics("this-pc"))
    probe.wait_for_message(
        lambda m: (
            m.topic == topics.status("this-pc")
            and decode_status(m.payload).state is AgentState.ONLINE
        ),
        20,
    )
    probe.wait_for_message(
        lambda m: (
            m.topic == topics.metrics("this-pc") and decode_metrics(m.payload).samples[0].mem > 0
        ),
        10,
    )
    wait_for(
        lambda: any(
            a["id"] == "this-pc" and a["state"] == "online"
            for a in httpx.get(
                f"http://127.0.0.1:{http_port}/agents", cookies=login.cookies, timeout=10
            ).json()
        ),
        20,
        "the local agent online in the web API",
    )
    children = psutil.Process(up.pid).children(recursive=True)
    assert len(children) >= 3

    up.signal(signal.SIGINT)
    assert up.wait(30) == 0
    wait_for(
        lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
        10,
        "children to exit",
    )
    assert not port_open(port)

    again = start_up(procs, data_dir, port, "up-2")
    wait_for(lambda: "mosquitto_sub" in again.output(), 60, "the banner again")
    assert "one-time password" not in again.output(), "the admin is created once"
    assert (data_dir / "secrets" / "viewer.password").read_text().strip() == viewer_password
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0


def test_up_refuses_a_busy_port_clearly(procs: Callable[..., Proc], tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = start_up(procs, tmp_path / "data", port, "up-busy")
        assert up.wait(20) == 1
    assert "in use" in up.output()


CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d (broker |maestro|web    |agent  |up     ) \| \S")


def start_up_with(
    procs: Callable[..., Proc], data_dir: Path, name: str, *options: str
) -> tuple[Proc, int]:
    http_port = free_port()
    argv = [sys.executable, "-m", "arete_cli", "up", "--data-dir", str(data_dir)]
    argv += ["--mqtt-port", str(free_port()), "--http-port", str(http_port), "--ws-port", "0"]
    argv += ["--agent-id", "this-pc", *options]
    proc = procs(argv, name, env={"ARETE_AGENT_INTERVAL_S": "0.5"})
    wait_for(lambda: "Areté is running" in proc.output(), 60, "the stack to start")
    return proc, http_port


def browse(http_port: int) -> None:
    """What a user's browser does: pages, the API, a few times."""
    for _ in range(5):
        for path in ("/", "/healthz", "/agents", "/docs", "/openapi.json"):
            httpx.get(f"http://127.0.0.1:{http_port}{path}", timeout=10)


def test_up_prints_one_stream_each_line_prefixed_with_its_component_and_no_access_lines(
    procs: Callable[..., Proc], tmp_path: Path
) -> None:
    up, http_port = start_up_with(procs, tmp_path / "data", "up-console")
    browse(http_port)
    wait_for(lambda: "agent state" in up.output(), 20, "the maestro to see the agent")
    up.signal(signal.SIGINT)
    assert up.wait(30) == 0
    output = up.output()
    before, _, rest = output.partition("\nAreté is running")
    _, _, after = rest.partition("--data-dir " + str(tmp_path / "data") + "\n")
    lines = [line for line in (before + "\n" + after).splitlines() if line.strip()]
    assert len(lines) >= 10, output
    for line in lines:
        assert CONSOLE_LINE.match(line), f"not prefixed: {line!r}"
        assert not line.split("| ", 1)[1].startswith("{"), f"raw JSON: {line!r}"
    seen = {line[9:16].strip() for line in lines}
    assert {"broker", "maestro", "web", "agent", "up"} <= seen, seen
    assert "HTTP/1.1" not in output, "one line per request only at --log-level debug"
    assert "GET /healthz" not in output
    assert lines[-1].endswith("| stopped")


def test_up_log_format_json_is_one_object_per_line_and_debug_adds_access_lines(
    procs: Callable[..., Proc], tmp_path: Path
) -> None:
    up, http_port = start_up_with(
        procs, tmp_path / "data", "up-json", "--log-format", "json", "--log-level", "debug"
    )
    browse(http_port)
    wait_for(lambda: "/healthz" in up.output(), 20, "the access lines")
    up.signal(signal.SIGTERM)
    assert up.wait(30) == 0
    documents = [json.loads(line) for line in up.output().splitlines() if line.strip()]
    assert len(documents) >= 10
    for document in documents:
        assert document["component"] in {"broker", "maestro", "web", "agent", "up"}, document
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", document["ts"])
        assert document["level"] in {"debug", "info", "warning", "error"}, document
    access = [d for d in documents if d.get("logger") == "uvicorn.access"]
    assert any("/healthz" in d["event"] for d in access), access[:3]
    assert all(d["component"] == "web" for d in access)
    assert any(d["component"] == "up" and "Areté is running" in d["event"] for d in documents)
    assert documents[-1] == {**documents[-1], "component": "up", "event": "stopped"}
