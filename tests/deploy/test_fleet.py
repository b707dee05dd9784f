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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.deploy import restore, rollouts, updates
from tests.deploy.fleet import AGENTS, SERVER_NAME, Fleet
from tests.deploy.scan import scan_hosts
from tests.deploy.uptime import run_scenario
from tests.fixtures.builds import build_version, signed_release
from tests.fixtures.hosts import boot_one_more
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import BuiltRelease, build_release

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


def command_logs(fleet: Fleet, agent: str) -> str:
    """The last minute of the agent's, the broker's and both replicas' journals (precise
    times), for the message of a command that did not end as expected."""
    since = "journalctl --no-pager -o short-precise --since=-90s"
    parts = [
        f"--- {agent}: {AGENT_UNIT}\n"
        + fleet.hosts[agent].sh(f"{since} -u {AGENT_UNIT} | tail -n 40", check=False),
        "--- central: broker and replicas\n"
        + fleet.hosts["central"].sh(
            f"{since} -u arete-broker -u 'arete-control@*' | tail -n 80", check=False
        ),
    ]
    return "\n".join(parts)


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


# -- self-updates (docs/updates.md; helpers in updates.py and rollouts.py) ------------------
def _update_both(fleet: Fleet, versions: dict[str, str], deadline: float) -> dict[str, Any]:
    """Send ``update`` to each agent (agent -> version) at once; the replies by agent."""
    replies: dict[str, Any] = {}

    def one(agent: str, version: str) -> None:
        args = {"version": version, "health_deadline_s": deadline}
        replies[agent] = updates.send_update(fleet, agent, args)

    threads = [threading.Thread(target=one, args=item) for item in versions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(320)
    return replies


def test_a_release_enters_the_store_only_signed_whole_and_unexpired(fleet: Fleet) -> None:
    made = updates.build_releases(fleet)
    for version in (updates.B, updates.EXITS, updates.SILENT, updates.DOWNGRADE):
        code, output = updates.add_release(fleet, made[version])
        assert code == 0, output
    # a wheel changed after signing, a stripped signature, an expired release: refused
    key, wheels = updates.release_key(), [build_version(updates.B)]
    bad = fleet.workdir / "bad-releases"
    tampered = signed_release(key, "0.2.1", wheels, bad / "tampered")
    with (tampered / wheels[0].name).open("r+b") as wheel:
        wheel.seek(1000)
        wheel.write(b"X")
    unsigned = signed_release(key, "0.2.2", wheels, bad / "unsigned")
    document = json.loads((unsigned / "release.json").read_text())
    document["sig"] = ""
    (unsigned / "release.json").write_text(json.dumps(document))
    expired = signed_release(key, "0.2.3", wheels, bad / "expired", expires_in_s=-30)
    for directory, reason in ((tampered, "tampered"), (unsigned, "unsigned"), (expired, "expired")):
        code, output = updates.add_release(fleet, directory)
        assert code != 0, output
        assert f"refused: {reason}" in output, output


def test_agents_refuse_tampered_unsigned_expired_and_older_releases_with_their_codes(
    fleet: Fleet,
) -> None:
    """Published past the store (the maestro's broker account), bad releases still stop at
    the agent, each with its own reply code, and nothing is installed."""
    key = updates.release_key()
    wheel = {"arete-0.3.0-py3-none-any.whl": secrets.token_bytes(3000)}
    cases = {
        "tampered": build_release(key, "0.3.1", wheel, tamper_chunk=(0, 0)),
        "unsigned": build_release(key, "0.3.2", wheel, unsigned=True),
        "bad_signature": build_release(key, "0.3.3", wheel, bad_signature=True),
        "expired": build_release(key, "0.3.4", wheel, expires_in_s=-30),
    }
    for code, built in cases.items():
        # The replicas clear a release their store lacks (at their scans): publish it
        # again every second until the agent has answered, so it is there when fetched.
        answered = threading.Event()

        def keep_publishing(
            built: BuiltRelease = built, answered: threading.Event = answered
        ) -> None:
            while not answered.is_set():
                updates.publish_directly(fleet, built)
                answered.wait(1.0)

        with ThreadPoolExecutor(1) as pool:
            publishing = pool.submit(keep_publishing)
            try:
                done = updates.send_update(fleet, "agent1", {"version": built.version})
            finally:
                answered.set()
            publishing.result(60)
        assert done["state"] == "failed", show(done)
        assert done.get("error_code") == code, show(done)
    older = updates.send_update(fleet, "agent2", {"version": updates.DOWNGRADE})
    assert older["state"] == "failed", show(older)
    assert older.get("error_code") == "downgrade", show(older)
    for agent in AGENTS:
        assert updates.layout(fleet, agent)[0] == f"versions/{updates.A}"
        listed = fleet.hosts[agent].sh("ls /opt/arete/versions").split()
        assert listed == [updates.A], listed


def test_a_broken_release_fails_its_rollout_at_the_canary_and_the_fleet_stays_on_a(
    fleet: Fleet,
) -> None:
    """A release that runs but never takes a sample goes out as a rollout job (canary 1,
    max_failures 0): the canary's host (agent1) switches back by itself, the job ends
    ``failed`` and never sends it to agent2. Meanwhile agent2 gets, as a direct command,
    a release that exits at start: its host switches back too. Both report A."""
    body = {
        "version": updates.SILENT,
        "agents": list(AGENTS),
        "canary": 1,
        "batch_size": 1,
        "max_failures": 0,
        "health_timeout_s": 300,
        "health_deadline_s": 45,
    }
    exits_args = {"version": updates.EXITS, "health_deadline_s": 45}
    with ThreadPoolExecutor(1) as pool:
        direct = pool.submit(updates.send_update, fleet, "agent2", exits_args)
        followed = rollouts.run_rollout(fleet, body)
        replied = direct.result(320)
    logs = "\n".join(updates.updater_log(fleet, agent) for agent in AGENTS)
    assert replied["state"] == "ok", f"{show(replied)}\n{logs}"
    job, canary, other = followed.job, followed.agent("agent1"), followed.agent("agent2")
    assert job["state"] == "failed", f"{followed.phases_seen}\n{job}\n{logs}"
    assert "max_failures=0" in (job["rollout"]["stop_reason"] or ""), job
    assert canary["batch"] == 0, job
    assert canary["phase"] == "rolled_back", job
    assert "no healthy report in 45 s" in (canary["reason"] or ""), job
    assert other["phase"] == "waiting", job
    assert other["command_id"] is None, job
    assert "agent2" not in followed.issued_at, followed.issued_at
    first = updates.wait_update(fleet, "agent1", "rolled_back", updates.A)
    assert first["update"]["reason"] == "no healthy report in 45 s", first
    assert first["update"]["to_version"] == updates.SILENT, first
    second = updates.wait_update(fleet, "agent2", "rolled_back", updates.A)
    assert second["update"]["reason"] == "the new version did not start", second
    assert second["update"]["to_version"] == updates.EXITS, second
    for agent in AGENTS:
        assert updates.layout(fleet, agent)[0] == f"versions/{updates.A}"
        assert fleet.hosts[agent].is_active(AGENT_UNIT) == "active"


def test_both_agents_update_from_a_to_b_even_when_killed_mid_update(fleet: Fleet) -> None:
    """While the updaters install B, agent1's updater and agent2's agent are killed -9:
    systemd starts them again, the update resumes, and both agents run B."""
    replies = _update_both(fleet, {"agent1": updates.B, "agent2": updates.B}, 120)
    for agent, done in replies.items():
        assert done["state"] == "ok", f"{agent}: {show(done)}\n{updates.updater_log(fleet, agent)}"
        assert done["result"]["to_version"] == updates.B, show(done)
    for agent, unit in (("agent1", "arete-agent-update.service"), ("agent2", AGENT_UNIT)):
        updates.wait_installing(fleet, agent, updates.B)
        updates.kill9(fleet, agent, unit)
    for agent in AGENTS:
        record = updates.wait_update(fleet, agent, "healthy", updates.B)
        assert record["update"]["from_version"] == updates.A, record
        assert updates.layout(fleet, agent) == (f"versions/{updates.B}", f"versions/{updates.A}")
        updates.wait_updater_ended(fleet, agent)
        request = "/var/lib/arete-agent/updates/request.json"
        assert fleet.hosts[agent].exec("test", "-e", request, check=False).returncode != 0


def test_a_rollout_job_takes_the_fleet_to_a_new_release_and_is_timed(fleet: Fleet) -> None:
    """A release added to the store goes out as a job through Caddy (canary agent1, then a
    batch of agent2); the job ends ``done`` with both agents healthy on it. Its figures
    (POST -> done, per agent: command -> healthy) go to ARETE_ROLLOUT_OUT for
    bench/rollout.py --deploy-from."""
    made = updates.build_releases(fleet)
    code, output = updates.add_release(fleet, made[updates.C])
    assert code == 0, output
    before = {agent: updates.agent_record(fleet, agent).get("version") for agent in AGENTS}
    body = {
        "version": updates.C,
        "agents": list(AGENTS),
        "canary": 1,
        "batch_size": 1,
        "max_failures": 0,
        "health_timeout_s": 300,
    }
    followed = rollouts.run_rollout(fleet, body)
    logs = "\n".join(updates.updater_log(fleet, agent) for agent in AGENTS)
    job = followed.job
    assert job["state"] == "done", f"{followed.phases_seen}\n{job}\n{logs}"
    assert sorted(followed.healthy_at) == sorted(AGENTS), followed.phases_seen
    assert [followed.agent(agent)["batch"] for agent in AGENTS] == [0, 1], job  # canary first
    for agent in AGENTS:
        assert followed.agent(agent)["phase"] == "healthy", job
        record = updates.wait_update(fleet, agent, "healthy", updates.C)
        assert record["update"]["from_version"] == before[agent], record
        assert updates.layout(fleet, agent)[0] == f"versions/{updates.C}"
    out = os.environ.get(rollouts.OUT_ENV)
    if out:
        versions = sorted({str(v) for v in before.values()})
        notes = "The release was added to the store just before the POST; no agent was killed"
        figures = rollouts.figures(followed, version_from="/".join(versions), notes=notes)
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")


def _cpu_seconds(client: httpx.Client, agent: str, start: float, end: float) -> set[float]:
    """The seconds of ``agent``'s stored cpu samples in ``[start, end)``."""
    answer = client.get(
        f"/agents/{agent}/metrics", params={"from": start, "to": end, "step": 1, "fields": "cpu"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {
        t for t, v in zip(body["ts"], body["series"]["cpu"]["avg"], strict=True) if v is not None
    }


def test_a_backup_under_load_restores_the_fleet_on_a_fresh_host(
    fleet: Fleet, tmp_path: Path
) -> None:
    """central's arete-backup.service runs while the agents send samples; a fresh host
    restores the archive (docs/backup.md, "Disaster recovery"): the admin logs in, both
    agents, agent1's history and the audit log from before are there, and agent1's MQTT
    password opens the restored broker."""
    with fleet.https(fleet.admin_token()) as client:  # the token is in the backup too
        wait_for(lambda: len(_cpu_seconds(client, "agent1", time.time() - 60, time.time())) >= 5,
                 60, "agent1's samples stored")  # fmt: skip
        history = _cpu_seconds(client, "agent1", time.time() - 600, time.time())
        audit = client.get("/audit", params={"limit": 1000}).json()
    assert audit, "no audit entry to carry over"
    archive, key_file = restore.back_up(fleet, tmp_path)
    ports = (restore.REPLICA_PORT, 8883)
    with boot_one_more(fleet.central, "restored", ports) as fresh:
        restore.install(fleet, fresh)
        restore.restore(fresh, archive, key_file)
        restore.put_secrets_back(fleet, fresh)
        restore.start_services(fresh)
        base = f"http://127.0.0.1:{fresh.port(restore.REPLICA_PORT)}"
        with httpx.Client(base_url=base, timeout=15) as user:
            wait_for(lambda: _healthy(user), 90, "the restored replica to answer", step=0.5)
            login = user.post(
                "/auth/login", json={"username": "admin", "password": fleet.admin_password}
            )
            assert login.status_code == 200, f"{login.text}\n{restore.journal(fresh)}"
            session = {"Cookie": f"arete_session={login.cookies['arete_session']}"}
            assert user.get("/auth/me", headers=session).json()["user"] == "admin"
            user.headers["Authorization"] = f"Bearer {fleet.admin_token()}"
            assert set(AGENTS) <= set(agents(user)), restore.journal(fresh)
            after = _cpu_seconds(user, "agent1", min(history) - 1, max(history) + 1)
            assert history <= after, f"lost: {sorted(history - after)[:20]}"
            restored = {json.dumps(e, sort_keys=True) for e in user.get(
                "/audit", params={"limit": 1000}).json()}  # fmt: skip
            missing = [e for e in audit if json.dumps(e, sort_keys=True) not in restored]
            assert not missing, missing[:5]
        password = fleet.secrets["agent1:vault_arete_agent_mqtt_password"]
        ca = fleet.fetched("broker-ca.crt")
        assert _mqtt_accepts(fresh.port(8883), "agent1", password, ca), restore.journal(fresh)
        assert not _mqtt_accepts(fresh.port(8883), "agent1", "not-the-password-1", ca)


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _mqtt_accepts(port: int, username: str, password: str, ca: Path) -> bool:
    """Whether the broker on 127.0.0.1:``port`` (TLS, ``ca``) accepts these credentials."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(ca))
    connected, codes = threading.Event(), []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        codes.append(code)
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert connected.wait(15), "no CONNACK from the restored broker"
        return not codes[0].is_failure
    finally:
        client.loop_stop()
        client.disconnect()


def test_restart_command_brings_the_agent_back_under_systemd(fleet: Fleet) -> None:
    host = fleet.hosts["agent1"]
    before = int(host.unit(AGENT_UNIT, "MainPID"))
    done = command(fleet, "agent1", "command", {"name": "restart", "args": {}, "timeout": 30})
    assert done["state"] == "ok", f"{show(done)}\n{command_logs(fleet, 'agent1')}"
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
    assert done["state"] == "ok", f"{show(done)}\n{command_logs(fleet, 'agent2')}"
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
