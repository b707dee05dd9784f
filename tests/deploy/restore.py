"""Disaster recovery on the deploy tier (issue 12, item 6; docs/backup.md): the deployed
central host backs up while its agents send samples, and a fresh host, booted beside it,
is brought back from that archive the way docs/backup.md's "Disaster recovery" says:
Areté installed from the deployment's wheelhouse, the archive restored into an empty data
dir (configs into /etc/arete), the secrets put back as credentials encrypted with the new
host's key, then the broker and one control-plane replica started under systemd.

The secrets come from this run's inventory (the vault), as they would after losing the
host; they travel only through pipes and this process's memory, except the backup key,
which the restore reads from a 0600 file (in the test's tmp dir and in /root on the new
host).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.deploy.fleet import ROOT, Fleet
from tests.fixtures.hosts import Host

BACKUP_DIR = "/var/backups/arete"
DATA_DIR = "/var/lib/arete"
CREDSTORE = "/etc/credstore.encrypted"
REPLICA, REPLICA_PORT = "a", 8081
UNITS = "/etc/systemd/system"
ROLES = ROOT / "ansible" / "roles"
CONTROL_DROPIN = f"{UNITS}/arete-control@.service.d/credentials.conf"
VENV = "/opt/arete/venv"
# credential -> the inventory's vault variable (ansible/roles/arete_control/tasks/main.yml)
VAULT = {
    "arete-mqtt-maestro": "vault_arete_mqtt_maestro_password",
    "arete-influx-token": "vault_arete_influx_token",
    "arete-telegram-token": "vault_arete_telegram_token",
    "arete-discord-webhook": "vault_arete_discord_webhook",
}


def back_up(fleet: Fleet, dest: Path) -> tuple[Path, Path]:
    """Run central's arete-backup.service now (it returns when the archive is written);
    copy out the newest archive and the backup key (decrypted from its credential,
    written 0600): (archive, key file)."""
    central = fleet.central
    central.exec("systemctl", "start", "arete-backup.service", timeout=240)
    newest = central.sh(f"ls -1t {BACKUP_DIR}/arete-*.backup | head -n 1").strip()
    assert newest, central.sh(f"ls -la {BACKUP_DIR}", check=False)
    archive = dest / Path(newest).name
    central.copy_out(newest, archive)
    key = central.exec(
        "systemd-creds", "decrypt", "--name=backup-key", f"{CREDSTORE}/backup-key", "-"
    ).stdout
    key_file = dest / "backup.key"
    handle = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(key)
    return archive, key_file


def install(fleet: Fleet, fresh: Host) -> None:
    """Areté[server] into /opt/arete/venv from the wheelhouse the play used, the arete
    account, and Debian's own Mosquitto out of the way (as the roles do)."""
    fresh.copy_in(fleet.fetched("wheelhouse.tar"), "/opt/wheels.tar")
    fresh.sh(
        "set -e; mkdir -p /opt/arete/wheels && tar -C /opt/arete/wheels -xf /opt/wheels.tar; "
        f"python3 -m venv {VENV}; {VENV}/bin/python -m pip install -q "
        "--disable-pip-version-check --no-cache-dir --no-index "
        "--find-links /opt/arete/wheels 'arete[server]'; "
        "useradd --system --user-group --home-dir /var/lib/arete --shell /usr/sbin/nologin "
        "arete; install -d -o root -g arete -m 0750 /etc/arete; "
        "systemctl disable --now mosquitto.service >/dev/null 2>&1 || true",
        timeout=400,
    )


def restore(fresh: Host, archive: Path, key_file: Path) -> str:
    """``arete backup restore`` into an empty data dir (configs into /etc/arete), then
    owned by the services' account; restore's output."""
    fresh.exec("install", "-d", "-m", "0700", "/root/restore")
    fresh.copy_in(archive, f"/root/restore/{archive.name}")
    fresh.copy_in(key_file, "/root/restore/backup.key")
    fresh.exec("chmod", "0600", "/root/restore/backup.key")
    done = fresh.exec(
        f"{VENV}/bin/arete", "backup", "restore", f"/root/restore/{archive.name}",
        "--data-dir", DATA_DIR, "--config-dir", "/etc/arete",
        "--key-file", "/root/restore/backup.key",
        timeout=180,
    )  # fmt: skip
    fresh.sh(
        f"set -e; chown -R arete:arete {DATA_DIR}; chgrp arete /etc/arete/*.toml; "
        f"install -o root -g arete -m 0644 {DATA_DIR}/broker/tls/ca.crt /etc/arete/broker-ca.crt"
    )
    return done.stdout + done.stderr


def put_secrets_back(fleet: Fleet, fresh: Host) -> None:
    """The replicas' credentials, encrypted with the fresh host's own key from the
    inventory's vault (what the Ansible run does; credentials of the lost host cannot be
    decrypted elsewhere), and a new signing key made there (docs/deploy.md, "Disaster
    recovery"); the drop-in that names them, as central has it."""
    dropin = fleet.central.read_text(CONTROL_DROPIN)
    names = re.findall(r"^LoadCredentialEncrypted=([\w-]+):", dropin, re.MULTILINE)
    assert "arete-mqtt-maestro" in names, dropin
    fresh.exec("install", "-d", "-m", "0700", CREDSTORE)
    for name in names:
        path = f"{CREDSTORE}/{name}"
        if name == "arete-signing-key":
            fresh.exec(
                "bash", "-c",
                f"set -o pipefail; umask 077; {VENV}/bin/arete keys generate --stdout"
                f" | systemd-creds encrypt --with-key=host --name={name} - {path}",
            )  # fmt: skip
            continue
        value = fleet.secrets[VAULT[name]]
        fresh.exec(
            "systemd-creds", "encrypt", "--with-key=host", f"--name={name}", "-", path,
            input=value,
        )  # fmt: skip
    fresh.exec("install", "-d", "-m", "0755", f"{UNITS}/arete-control@.service.d")
    fresh.exec("sh", "-c", f"cat > {CONTROL_DROPIN}", input=dropin)


def start_services(fresh: Host) -> None:
    """The roles' units for the broker and replica ``a`` (listening on every address of
    the host here: no proxy in front of it), started from the restored data."""
    fresh.copy_in(ROLES / "arete_broker" / "files" / "arete-broker.service", UNITS)
    fresh.copy_in(ROLES / "arete_control" / "files" / "arete-control@.service", UNITS)
    port = f"{UNITS}/arete-control@{REPLICA}.service.d"
    fresh.exec("install", "-d", "-m", "0755", port)
    fresh.exec(
        "sh",
        "-c",
        f"cat > {port}/port.conf",
        input=f"[Service]\nEnvironment=ARETE_WEB_PORT={REPLICA_PORT} ARETE_WEB_HOST=0.0.0.0\n",
    )
    fresh.exec("systemctl", "daemon-reload")
    fresh.exec("systemctl", "start", "arete-broker.service", timeout=120)
    fresh.exec("systemctl", "start", f"arete-control@{REPLICA}.service", timeout=120)


def journal(fresh: Host) -> str:
    """The new host's broker and replica journals, for an assertion message."""
    return fresh.sh("journalctl --no-pager -n 60 -u arete-broker -u 'arete-control@*'", check=False)
