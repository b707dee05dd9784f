"""A deployment's services each started from one TOML file, with no secret in a plain
file: a broker that makes no service accounts of its own (``service_accounts = false``),
accounts created with ``arete broker passwd`` from stdin, and a control plane
(``arete web run --config``) reading its MQTT password and signing key from a
``$CREDENTIALS_DIRECTORY`` the way systemd provides them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.fixtures.broker import distinct_free_ports
from tests.fixtures.procs import ARETE, REPO, Proc, port_open, wait_for

PASSWORD = "Zr4mXq8pLw2sVt6yBn0cKd5fHj9gMa3e"


def arete(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARETE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def test_broker_and_control_plane_run_from_their_files_with_secrets_as_credentials(
    procs: Callable[..., Proc], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    mqtt_port, http_port = distinct_free_ports(2)
    broker_toml = tmp_path / "broker.toml"
    broker_toml.write_text(
        f'data_dir = "{data}"\nport = {mqtt_port}\nroot = "deploy"\nservice_accounts = false\n'
    )
    broker = procs([*ARETE, "broker", "run", "--config", str(broker_toml)], "broker")
    wait_for(lambda: port_open(mqtt_port), 20, "the broker")
    assert not (data / "secrets" / "maestro.password").exists()
    assert not (data / "secrets" / "viewer.password").exists()

    done = arete("broker", "passwd", "maestro", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "reloaded its accounts" in done.stdout

    # What systemd's LoadCredentialEncrypted= would put in $CREDENTIALS_DIRECTORY.
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    key = arete("keys", "generate", "--stdout").stdout
    for name, value in (("mqtt-password", PASSWORD), ("signing-key", key)):
        (creds / name).write_text(value)
        (creds / name).chmod(0o400)
    control = tmp_path / "control.toml"
    control.write_text(
        f'data_dir = "{data}"\n'
        f"[web]\nport = {http_port}\n"
        '[maestro]\nsigning_key_file = "$CREDENTIALS_DIRECTORY/signing-key"\n'
        '[maestro.mqtt]\npassword_file = "$CREDENTIALS_DIRECTORY/mqtt-password"\n'
        "[maestro.liveness]\ntick_s = 0.2\n"
    )
    web = procs(
        [*ARETE, "web", "run", "--config", str(control), "--replica", "a"],
        "web",
        env={"CREDENTIALS_DIRECTORY": str(creds)},
    )

    def ready() -> bool:
        if not web.alive():
            raise AssertionError(f"web run exited:\n{web.output()}")
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 30, "the control plane")
    assert broker.alive()
    # No plain file of the data dir holds the MQTT password or the private key.
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert PASSWORD.encode() not in content, path
            assert key.splitlines()[1].encode() not in content, path
