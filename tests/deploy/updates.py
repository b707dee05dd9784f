"""Self-updates on the deployed fleet (docs/updates.md), as the deploy tests use them.

This session's release key signs every release; its public half goes into the inventory
(``arete_release_public_key``), so agents, their host updaters and the control plane
trust it. :func:`build_releases` makes the versions once per session, from this checkout
with bumped version numbers (tests/fixtures/builds.py caches the wheels by source hash):
B and C install and work, ``EXITS`` exits at start, ``SILENT`` runs but never takes a
sample.
:func:`add_release` puts one into the control host's store with ``arete release add``,
as an operator would; :func:`publish_directly` plays a broker account that bypasses the
store (what a compromised control plane could send), so the agents' own checks show.
"""

from __future__ import annotations

import secrets
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from arete.release import public_key_text
from arete.topics import Topics
from arete.version import __version__
from tests.fixtures.builds import build_version, release_wheels, signed_release
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import BuiltRelease

if TYPE_CHECKING:
    from tests.deploy.fleet import Fleet

A: Final = __version__
B, EXITS, SILENT = "0.1.1", "0.1.2", "0.1.3"
C: Final = "0.1.4"  # the timed rollout's version, newer than whichever the agents run
DOWNGRADE: Final = "0.0.9"
VERSIONS: Final = {B: "ok", EXITS: "exits", SILENT: "silent", C: "ok"}
STORE_STAGING: Final = "/var/tmp/arete-releases"  # on the control host, readable by arete
ARETE: Final = "/opt/arete/venv/bin/arete"  # the control host's install
_KEY = Ed25519PrivateKey.generate()  # this test session's release key


def release_key() -> Ed25519PrivateKey:
    return _KEY


def release_public_key() -> str:
    return public_key_text(_KEY.public_key())


def build_releases(fleet: Fleet) -> dict[str, Path]:
    """Signed release dirs (release.json + every wheel) of B, EXITS, SILENT, C and a small
    DOWNGRADE, made from the fleet's own wheelhouse; once per session."""
    cached = getattr(fleet, "_releases", None)
    if cached is not None:
        return dict(cached)
    house = fleet.workdir / "wheelhouse"
    made: dict[str, Path] = {}
    for version, variant in VERSIONS.items():
        wheel = build_version(version, variant)
        wheels = release_wheels(wheel, house, version)
        made[version] = signed_release(_KEY, version, wheels, fleet.workdir / "releases" / version)
    old = fleet.workdir / "old-wheel" / f"arete-{DOWNGRADE}-py3-none-any.whl"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"an older arete: never installed")
    made[DOWNGRADE] = signed_release(_KEY, DOWNGRADE, [old], fleet.workdir / "releases" / DOWNGRADE)
    fleet._releases = dict(made)  # type: ignore[attr-defined]
    return made


def add_release(fleet: Fleet, directory: Path) -> tuple[int, str]:
    """``arete release add DIR`` as the ``arete`` user on the control host; (exit, output)."""
    host = fleet.central
    target = f"{STORE_STAGING}/{directory.name}-{secrets.token_hex(3)}"
    host.exec("mkdir", "-p", STORE_STAGING)
    host.copy_in(directory, target)
    host.exec("chmod", "-R", "a+rX", STORE_STAGING)
    argv = ["runuser", "-u", "arete", "--", ARETE, "release", "add", target]
    argv += ["--data-dir", "/var/lib/arete", "--public-key", release_public_key()]
    done = host.exec(*argv, check=False, timeout=120)
    host.exec("rm", "-rf", target)
    return done.returncode, done.stdout + done.stderr


def publish_directly(fleet: Fleet, built: BuiltRelease) -> None:
    """Put ``built`` on the broker (retained, QoS 1) with the maestro's account, past the
    store: what the agents must refuse on their own. The replicas clear a release their
    store lacks at their next scan (every 60 s), so this is for a command sent at once."""
    topics = Topics("arete")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"maestro:deploy-release-{secrets.token_hex(3)}"
    )
    client.username_pw_set("maestro", fleet.secrets["vault_arete_mqtt_maestro_password"])
    client.tls_set(ca_certs=str(fleet.fetched("broker-ca.crt")))
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", fleet.central.port(8883), keepalive=10)
    client.loop_start()
    try:
        assert connected.wait(15), "no CONNACK from the broker"
        for topic, payload in reversed(built.messages(topics)):  # chunks first
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(15)
            assert info.is_published(), topic
    finally:
        client.loop_stop()
        client.disconnect()


def send_update(fleet: Fleet, agent: str, args: dict[str, Any], timeout: float = 280) -> Any:
    """POST an ``update`` command and wait for its reply (handed over, or refused)."""
    body = {"name": "update", "args": args, "timeout": timeout}
    with fleet.https(fleet.admin_token(), timeout=timeout + 30) as client:
        answer = client.post(f"/agents/{agent}/command", params={"wait": "true"}, json=body)
        assert answer.status_code in (200, 201, 202), answer.text
        return answer.json()


def agent_record(fleet: Fleet, agent: str) -> dict[str, Any]:
    with fleet.https(fleet.admin_token()) as client:
        answer = client.get("/agents")
        answer.raise_for_status()
        found: dict[str, Any] = {a["id"]: a for a in answer.json()}.get(agent, {})
        return found


def wait_update(
    fleet: Fleet, agent: str, phase: str, version: str, timeout: float = 300
) -> dict[str, Any]:
    """Wait until GET /agents shows ``agent`` online on ``version`` with its updater's
    last update in ``phase``; its record."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.clear()
        seen.update(agent_record(fleet, agent))
        update = seen.get("update") or {}
        return (
            seen.get("state") == "online"
            and seen.get("version") == version
            and update.get("phase") == phase
        )

    try:
        wait_for(reached, timeout, f"{agent} online on {version}, update {phase}", step=1.0)
    except TimeoutError as exc:
        log = updater_log(fleet, agent)
        raise AssertionError(f"{exc}; last seen: {seen}\n{log}") from None
    return dict(seen)


def updater_log(fleet: Fleet, agent: str) -> str:
    """The host updater's and the agent's last journal lines and the layout, for a message."""
    return fleet.hosts[agent].sh(
        "journalctl --no-pager -o short-precise --since=-5min -u arete-agent-update "
        "-u arete-agent | tail -n 60; ls -l /opt/arete /opt/arete/versions; "
        "cat /var/lib/arete-agent/updates/state.json",
        check=False,
    )


def layout(fleet: Fleet, agent: str) -> tuple[str, str]:
    """(current, previous) link targets on the agent's host ('' when absent)."""
    host = fleet.hosts[agent]
    links = [
        host.exec("readlink", f"/opt/arete/{name}", check=False).stdout.strip()
        for name in ("current", "previous")
    ]
    return links[0], links[1]


def kill9(fleet: Fleet, agent: str, unit: str) -> int:
    """kill -9 the main process of ``unit`` on ``agent``'s host; its PID."""
    host = fleet.hosts[agent]
    pid = int(host.unit(unit, "MainPID"))
    assert pid > 0, f"{unit} is not running on {agent}"
    host.exec("kill", "-9", str(pid))
    return pid


def wait_installing(fleet: Fleet, agent: str, version: str, timeout: float = 240) -> None:
    """Until the host updater is installing ``version`` (its venv is being made)."""
    host = fleet.hosts[agent]
    check = (
        f"test -d /opt/arete/versions/{shlex.quote(version)}/bin && grep -q installing "
        "/var/lib/arete-agent/updates/state.json"
    )
    wait_for(
        lambda: host.exec("sh", "-c", check, check=False).returncode == 0,
        timeout,
        f"the updater of {agent} to install {version}",
        step=0.5,
    )


def wait_updater_ended(fleet: Fleet, agent: str, timeout: float = 30) -> None:
    """Until the host updater's service is inactive: it ends once it kept the version,
    after pruning, so soon after ``healthy`` is reported but not at once."""
    host = fleet.hosts[agent]
    wait_for(
        lambda: host.is_active("arete-agent-update.service") == "inactive",
        timeout,
        f"the updater of {agent} to end",
        step=0.5,
    )
