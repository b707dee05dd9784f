"""A fleet deployed by ansible/site.yml on three real systemd hosts, checked as a user would.

central runs the broker, control-plane replicas a and b and Caddy; agent1 and agent2 run
an agent each. Every test shares the one deployment of the session (conftest.py), in
file order: read-only checks first, then the file scan, the uptime scenario, and the
tests that restart, reboot and stop agents.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.deploy.fleet import AGENTS, SERVER_NAME, Fleet
from tests.deploy.scan import scan_hosts
from tests.deploy.uptime import run_scenario
from tests.fixtures.procs import wait_for

# The first test also boots the hosts and deploys twice: minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)

UPTIME_OUT_ENV = "ARETE_UPTIME_OUT"  # bench/uptime.py reads the figures from this file
SIGNING_CREDENTIAL = "/etc/credstore.encrypted/arete-signing-key"
CADDY_ROOT = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"
AGENT_UNIT = "arete-agent.service"


def changed_tasks(output: str) -> list[str]:
    """``TASK [name]`` headers followed by a ``changed:`` line, for a failure message."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            found.append(f"{task} {line}")
    return found


def agents(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/agents")
    answer.raise_for_status()
    return {agent["id"]: agent for agent in answer.json()}


def wait_state(fleet: Fleet, agent: str, state: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until GET /agents shows ``agent`` in ``state``; its record."""
    seen: dict[str, Any] = {}
    with fleet.https(fleet.admin_token()) as client:

        def reached() -> bool:
            seen.update(agents(client).get(agent, {}))
            return seen.get("state") == state

        try:
            wait_for(reached, timeout, f"{agent} to be {state} in GET /agents", step=0.5)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last seen: {seen}") from None
    return seen


def command(fleet: Fleet, agent: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST a command (``?wait=true``); its final record."""
    with fleet.https(fleet.admin_token(), timeout=60) as client:
        answer = client.post(f"/agents/{agent}/{path}", params={"wait": "true"}, json=body)
        assert answer.status_code in (200, 201, 202), answer.text
        record = answer.json()
        history = client.get(f"/commands/{record['id']}/history")
        record["_history"] = history.json() if history.status_code == 200 else history.text
    return record


def agent_log(fleet: Fleet, agent: str) -> str:
    """The agent's last journal lines, for an assertion message."""
    return fleet.hosts[agent].sh(f"journalctl -u {AGENT_UNIT} -n 25 --no-pager", check=False)


def show(record: Any) -> str:
    """A command record in full, for an assertion message."""
    return json.dumps(record, default=str)[:3000]


def test_a_second_run_of_site_yml_changes_nothing(fleet: Fleet) -> None:
    assert fleet.first_run.recap.keys() == {"central", *AGENTS}
    second = fleet.playbook("site-2.log")
    assert second.returncode == 0, second.tail()
    changed = second.changed()
    if changed != {"central": 0, **dict.fromkeys(AGENTS, 0)}:
        units = {
            name: host.sh(
                "systemctl show -p Id -p ActiveState -p NRestarts -p ExecMainStartTimestamp "
                "'arete-*' caddy.service",
                check=False,
            )
            for name, host in fleet.hosts.items()
        }
        pytest.fail(f"the second run changed {changed}: {changed_tasks(second.output)}\n{units}")
    assert all(counts.get("failed", 0) == 0 for counts in second.recap.values())


def test_dashboard_is_served_over_https_verified_against_the_deployed_ca(fleet: Fleet) -> None:
    assert fleet.fetched("proxy-ca.crt").read_text() == fleet.central.read_text(CADDY_ROOT)
    with fleet.https() as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "Mission Control" in page.text  # the built dashboard the role installed
        script = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
        assert script is not None, page.text
        asset = client.get(script.group(1))
        assert asset.status_code == 200
        assert len(asset.content) > 10_000
    # The certificate really comes from the deployed CA: the system's CAs do not vouch for it.
    untrusted = ssl.create_default_context()
    with (
        httpx.Client(
            base_url=fleet.https_url,
            verify=untrusted,
            headers={"Host": SERVER_NAME},
            event_hooks={"request": [_sni]},
        ) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get("/")


def _sni(request: httpx.Request) -> None:
    request.extensions["sni_hostname"] = SERVER_NAME


def test_http_redirects_to_https_and_hsts_is_set(fleet: Fleet) -> None:
    plain = httpx.get(
        f"http://127.0.0.1:{fleet.central.port(80)}/agents?state=online",
        headers={"Host": SERVER_NAME},
        follow_redirects=False,
    )
    assert plain.status_code in (301, 308)
    assert plain.headers["location"] == f"https://{SERVER_NAME}/agents?state=online"
    with fleet.https() as client:
        answer = client.get("/healthz")
    assert answer.status_code == 200
    hsts = answer.headers.get("strict-transport-security", "")
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age is not None, f"no HSTS header: {dict(answer.headers)}"
    assert int(max_age.group(1)) >= 180 * 86400


def test_admin_logs_in_with_the_vault_password_and_sees_both_agents_online(fleet: Fleet) -> None:
    with fleet.https() as client:
        wrong = client.post("/auth/login", json={"username": "admin", "password": "not-it-123456"})
        assert wrong.status_code == 401
        login = client.post(
            "/auth/login", json={"username": "admin", "password": fleet.admin_password}
        )
        assert login.status_code == 200, login.text
        assert login.cookies.get("arete_session")
        me = client.get("/auth/me").json()
        assert me["user"] == "admin"
        assert me["role"] == "admin"
        assert not me.get("must_change_password")
        wait_for(
            lambda: all(agents(client).get(a, {}).get("state") == "online" for a in AGENTS),
            90,
            "agent1 and agent2 online in GET /agents",
            step=0.5,
        )


def _agent_config(fleet: Fleet, agent: str) -> str:
    return fleet.hosts[agent].read_text("/etc/arete/agent.toml")


def test_agents_require_signed_commands_and_run_a_signed_one(fleet: Fleet) -> None:
    public_key = fleet.fetched("signing.pub").read_text().strip()
    for agent in AGENTS:
        config = _agent_config(fleet, agent)
        assert public_key in config or "public_key_file" in config, config
    done = command(fleet, "agent1", "command", {"name": "metrics", "args": {}, "timeout": 30})
    assert done["state"] == "ok", show(done)
    assert done.get("result"), show(done)
    # The remote shell is off on agents deployed without an allow list.
    shell = command(fleet, "agent2", "command", {"name": "shell", "args": {"argv": ["id"]}})
    assert shell["state"] in ("rejected", "failed"), f"{show(shell)}\n{agent_log(fleet, 'agent2')}"
    assert shell.get("error_code") == "not_allowed", show(shell)


def _mqtt_connect(
    fleet: Fleet, username: str, password: str, ca: Path | None
) -> tuple[mqtt.Client, threading.Event, list[str], list[ReasonCode]]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{username}:deploy-test-{secrets.token_hex(3)}"
    )
    client.username_pw_set(username, password)
    if ca is None:
        client.tls_set()  # the system's CAs
    else:
        client.tls_set(ca_certs=str(ca))
    connected, topics, codes = threading.Event(), [], []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        codes.append(code)
        if not code.is_failure:
            c.subscribe("arete/#")
        connected.set()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        topics.append(message.topic)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", fleet.central.port(8883), keepalive=10)
    client.loop_start()
    return client, connected, topics, codes


def test_mqtt_over_tls_with_the_ca_the_role_distributed(fleet: Fleet) -> None:
    ca = fleet.fetched("broker-ca.crt")
    config = _agent_config(fleet, "agent1")
    path = re.search(r'ca_file\s*=\s*"([^"]+)"', config)
    assert path is not None, config
    assert fleet.hosts["agent1"].read_text(path.group(1)) == ca.read_text()
    viewer = fleet.secrets["vault_arete_mqtt_viewer_password"]
    client, connected, topics, codes = _mqtt_connect(fleet, "viewer", viewer, ca)
    try:
        assert connected.wait(15), "no CONNACK over TLS"
        assert not codes[0].is_failure, codes
        wait_for(
            lambda: any(t.startswith("arete/metrics/") for t in topics),
            20,
            "an agent's metrics on the viewer's TLS connection",
            step=0.2,
        )
    finally:
        client.loop_stop()
        client.disconnect()
    wrong, connected, _topics, codes = _mqtt_connect(fleet, "viewer", "not-the-password-1", ca)
    try:
        assert connected.wait(15)
        assert codes[0].is_failure, "a wrong password was accepted"
    finally:
        wrong.loop_stop()
        wrong.disconnect()


def test_no_secret_value_is_in_any_file_of_any_host(fleet: Fleet) -> None:
    values = {**fleet.secrets, **fleet.extra_secrets}
    values["admin_token"] = fleet.admin_token()
    pem = fleet.central.exec("systemd-creds", "decrypt", SIGNING_CREDENTIAL, "-").stdout
    assert "PRIVATE KEY" in pem
    values["signing key"] = pem
    # The scan must see files on disk and on tmpfs (/tmp): a canary in each proves it.
    canary = secrets.token_urlsafe(24)
    values["canary"] = canary
    agent = fleet.hosts["agent1"]
    agent.exec(
        "sh", "-c", "cat > /var/lib/canary.txt && cp /var/lib/canary.txt /tmp/", input=canary
    )
    try:
        hits = scan_hosts(fleet.hosts.values(), values)
    finally:
        agent.exec("rm", "-f", "/var/lib/canary.txt", "/tmp/canary.txt")
    assert hits.pop("canary") == ["agent1:/tmp/canary.txt", "agent1:/var/lib/canary.txt"]
    assert hits == {}


def test_control_plane_stays_up_through_a_kill_and_a_rolling_restart(fleet: Fleet) -> None:
    wait_state(fleet, "agent1", "online")
    figures = run_scenario(fleet, fleet.admin_token(), follow="agent1")
    assert figures.restarted_pid not in (0, figures.killed_pid)
    assert figures.nrestarts_after == figures.nrestarts_before + 1
    assert figures.requests >= 200, figures
    assert figures.success_ratio >= 0.999, figures.failures
    # The websocket was cut (every replica restarted) and came back by itself.
    assert figures.ws_drops >= 1, figures
    assert figures.ws_connects == figures.ws_drops + 1, figures
    assert figures.ws_frames_after_last_connect >= 2, figures
    out = os.environ.get(UPTIME_OUT_ENV)
    if out:  # only figures that held (bench/uptime.py --from FILE --write)
        Path(out).write_text(json.dumps(figures.as_dict(), indent=1))


def test_restart_command_brings_the_agent_back_under_systemd(fleet: Fleet) -> None:
    host = fleet.hosts["agent1"]
    before = int(host.unit(AGENT_UNIT, "MainPID"))
    done = command(fleet, "agent1", "command", {"name": "restart", "args": {}, "timeout": 30})
    assert done["state"] == "ok", f"{show(done)}\n{agent_log(fleet, 'agent1')}"
    wait_for(
        lambda: int(host.unit(AGENT_UNIT, "MainPID")) not in (0, before),
        60,
        "a new agent process on agent1",
        step=0.3,
    )
    assert host.is_active(AGENT_UNIT) == "active"
    wait_state(fleet, "agent1", "online")


def test_rebooting_an_agent_host_brings_its_agent_back_with_no_action(fleet: Fleet) -> None:
    host = fleet.hosts["agent1"]
    host.restart()
    assert host.is_active(AGENT_UNIT) in ("active", "activating")
    wait_state(fleet, "agent1", "online", timeout=120)


def test_stop_command_keeps_the_agent_stopped(fleet: Fleet) -> None:
    host = fleet.hosts["agent2"]
    restarts = host.unit(AGENT_UNIT, "NRestarts")
    done = command(fleet, "agent2", "command", {"name": "stop", "args": {}, "timeout": 30})
    assert done["state"] == "ok", show(done)
    wait_for(
        lambda: host.is_active(AGENT_UNIT) in ("inactive", "failed"),
        60,
        "arete-agent to stop on agent2",
        step=0.3,
    )
    # The agent said why it went: offline with reason "stop (command <id>)" (docs/topics.md).
    record = wait_state(fleet, "agent2", "offline")
    assert "stop" in str(record.get("reason")), record
    time.sleep(5)  # RestartSec and more: systemd must not start it again
    assert host.is_active(AGENT_UNIT) == "inactive"
    assert host.unit(AGENT_UNIT, "ExecMainStatus") == "64"
    assert host.unit(AGENT_UNIT, "NRestarts") == restarts
