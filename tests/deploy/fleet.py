"""A fleet deployed by ``ansible/site.yml`` on real systemd hosts, as the deploy tests use it.

:func:`deploy` writes an inventory for the hosts of :func:`tests.fixtures.hosts.boot_hosts`
with secrets made for this run only (in the test's tmp dir on the controller, never on a
host), and runs ``ansible-playbook`` through the ``containers.podman`` connection plugin.
:class:`Fleet` reaches the deployment from outside, as a user would: HTTPS through Caddy's
published port, verified against the CA the play fetched, with the server name users type
(SNI and Host ``central``); MQTT over TLS on the broker's published 8883.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arete_cli.backup.crypto import key_text, new_key
from tests.deploy.updates import release_public_key
from tests.fixtures.hosts import Host, ansible_collections, wheelhouse

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "ansible" / "site.yml"
DIST = ROOT / "dashboards" / "web" / "dist"
SERVER_NAME = "central"  # the name users type; Caddy's certificate is for it
CENTRAL, AGENTS = "central", ("agent1", "agent2")
PUBLISHED = {CENTRAL: (443, 80, 8883)}
REPLICAS = {"a": 8081, "b": 8082}
PLAYBOOK_TIMEOUT_S = 900.0
_RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    recap: dict[str, dict[str, int]]  # host -> {"ok": .., "changed": .., "failed": ..}

    def changed(self) -> dict[str, int]:
        return {host: counts.get("changed", 0) for host, counts in self.recap.items()}

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """``PLAY RECAP`` lines: ``central : ok=12 changed=3 unreachable=0 failed=0 ...``."""
    recap_at = output.rfind("PLAY RECAP")
    found: dict[str, dict[str, int]] = {}
    for match in _RECAP.finditer(output[recap_at:] if recap_at >= 0 else ""):
        pairs = (item.split("=") for item in match.group(2).split())
        found[match.group(1)] = {key: int(value) for key, value in pairs}
    return found


def make_secrets() -> dict[str, str]:
    """Every secret of this run's inventory, by vault variable (fresh for each run)."""
    made = {
        "vault_arete_mqtt_maestro_password": secrets.token_urlsafe(24),
        "vault_arete_mqtt_viewer_password": secrets.token_urlsafe(24),
        "vault_arete_admin_password": secrets.token_urlsafe(18),
        "vault_arete_influx_token": secrets.token_urlsafe(32),
        # arete-backup.timer on central (tests/deploy/restore.py restores its archive)
        "vault_arete_backup_key": key_text(new_key()),
        "vault_arete_discord_webhook": (
            f"https://discord.com/api/webhooks/{secrets.randbelow(10**18)}/"
            f"{secrets.token_urlsafe(40)}"
        ),
    }
    for agent in AGENTS:
        made[f"{agent}:vault_arete_agent_mqtt_password"] = secrets.token_urlsafe(24)
    return made


def _snapshot(source: Path, dest: Path, *, hard_links: bool = True) -> Path:
    """This run's own copy (hard links where possible) of a dir another session may change
    meanwhile (the shared wheelhouse's arete wheel, the dashboard's build): the second
    run must copy what the first one did."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    shutil.copytree(source, dest, copy_function=link if hard_links else shutil.copy2)
    return dest


def write_inventory(
    workdir: Path, hosts: dict[str, Host], made: dict[str, str], fetch_dir: Path
) -> Path:
    """An inventory dir (hosts.ini, group_vars, host_vars) like ansible/example/."""
    inventory = workdir / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    central = hosts[CENTRAL].container
    lines = [
        "[arete_broker]",
        f"{CENTRAL} ansible_host={central}",
        "[arete_control]",
        CENTRAL,
        "[arete_proxy]",
        CENTRAL,
        "[arete_agents]",
        *(f"{agent} ansible_host={hosts[agent].container}" for agent in AGENTS),
        "[all:vars]",
        "ansible_connection=containers.podman.podman",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    (inventory / "hosts.ini").write_text("\n".join(lines) + "\n")
    settings: dict[str, Any] = {
        "arete_wheelhouse": str(_snapshot(wheelhouse(), workdir / "wheelhouse")),
        "arete_fetch_dir": str(fetch_dir),
        "arete_broker_address": CENTRAL,
        "arete_broker_tls_port": 8883,
        "arete_control_replicas": [{"name": n, "port": p} for n, p in REPLICAS.items()],
        "arete_proxy_server_name": SERVER_NAME,
        "arete_proxy_tls": "internal",
        "arete_agent_shell_allow": [],
        # Self-update (tests/deploy/updates.py signs this session's releases).
        "arete_release_public_key": release_public_key(),
        # A copy too: the checkout's dist is rebuilt when the dashboard's sources change.
        "arete_dashboard_dist": str(_snapshot(DIST, workdir / "dashboard", hard_links=False))
        if DIST.is_dir()
        else "",
    }
    # JSON is YAML: no quoting surprises in generated values.
    (inventory / "group_vars" / "all" / "main.yml").write_text(json.dumps(settings, indent=1))
    vault = {key: value for key, value in made.items() if ":" not in key}
    (inventory / "group_vars" / "all" / "vault.yml").write_text(json.dumps(vault, indent=1))
    for key, value in made.items():
        host, sep, var = key.partition(":")
        if sep:
            folder = inventory / "host_vars" / host
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "vault.yml").write_text(json.dumps({var: value}))
    for path in inventory.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    return inventory


def ansible_env(workdir: Path, podman_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **podman_env,
        "ANSIBLE_COLLECTIONS_PATH": str(ansible_collections()),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_REMOTE_TMP": "/root/.ansible/tmp",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-local"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
        # Each task's duration in the log, the slowest listed at the end.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "25",
        "PYTHONUNBUFFERED": "1",
    }


def run_playbook(inventory: Path, env: dict[str, str], log: Path) -> PlaybookRun:
    binary = Path(sys.executable).parent / "ansible-playbook"
    argv = [str(binary), "-i", str(inventory / "hosts.ini"), str(SITE)]
    with log.open("w") as out:
        done = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=PLAYBOOK_TIMEOUT_S,
            check=False,
            env=env,
            cwd=SITE.parent,
        )
    output = log.read_text(errors="replace")
    return PlaybookRun(done.returncode, output, parse_recap(output))


@dataclass
class Fleet:
    """The deployed hosts, the secrets of this run and ways in from outside."""

    hosts: dict[str, Host]
    workdir: Path
    inventory: Path
    env: dict[str, str]
    secrets: dict[str, str]
    fetch_dir: Path
    first_run: PlaybookRun
    extra_secrets: dict[str, str] = field(default_factory=dict)  # made after the deploy

    @property
    def central(self) -> Host:
        return self.hosts[CENTRAL]

    @property
    def admin_password(self) -> str:
        return self.secrets["vault_arete_admin_password"]

    def fetched(self, name: str) -> Path:
        """A public file the play left on the controller (proxy-ca.crt, broker-ca.crt...)."""
        return self.fetch_dir / name

    def playbook(self, log_name: str) -> PlaybookRun:
        return run_playbook(self.inventory, self.env, self.workdir / log_name)

    def tls_context(self, ca_name: str = "proxy-ca.crt") -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.fetched(ca_name)))

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.central.port(443)}"

    def https(self, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
        """A client of the dashboard through Caddy: TLS verified against the deployed CA,
        for the name ``central`` (SNI and Host), with an API token when given."""
        headers = {"Host": SERVER_NAME, "Origin": f"https://{SERVER_NAME}"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

        def sni(request: httpx.Request) -> None:
            request.extensions["sni_hostname"] = SERVER_NAME

        return httpx.Client(
            base_url=self.https_url,
            verify=self.tls_context(),
            headers=headers,
            timeout=timeout,
            event_hooks={"request": [sni]},
        )

    def admin_token(self) -> str:
        """Log in as admin (the vault's password) and make an API token (kept as a secret
        the file scan looks for)."""
        if "admin_token" in self.extra_secrets:
            return self.extra_secrets["admin_token"]
        with self.https() as client:
            login = client.post(
                "/auth/login", json={"username": "admin", "password": self.admin_password}
            )
            login.raise_for_status()
            made = client.post("/users/admin/tokens", json={"label": "deploy-test"})
            made.raise_for_status()
            token = str(made.json()["token"])
        self.extra_secrets["admin_token"] = token
        return token
