"""Where the broker's files live under the data dir, and how private files are written.

::

    DATA/                       0700
      broker/                   0700
        mosquitto.conf          generated at every ``arete broker run``
        acl                     generated at every ``arete broker run``
        passwd                  0600, password hashes only
        broker.json             0600, what ``arete agents add`` needs (port, root, pid)
        .run.lock               held by the one ``arete broker run`` of this data dir
        .passwd.lock            serialises changes to passwd and the agent configs
        arete_clientid.so       the client-id plugin, built from mosquitto/c/ at run
        persistence/            Mosquitto's retained messages and sessions
        tls/                    ca.crt, ca.key (0600), server.crt, server.key (0600)
      secrets/                  0700
        maestro.password        0600
        viewer.password         0600
        viewer-cli/             0700, mosquitto_sub options (XDG_CONFIG_HOME=this dir)
        maestro-cli/            0700, mosquitto_sub and mosquitto_pub options
      agents/                   0700
        <id>.toml               0600, a ready-to-use agent config (holds its password)
        ca.crt                  0644, copy of broker/tls/ca.crt (TLS configs name it)

Secrets are never world-readable: every file here is written through
:func:`write_private`, which creates it with mode 0600 before a byte is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from arete.errors import TopicError
from arete.topics import validate_agent_id
from mosquitto.errors import BrokerConfigError, DataDirError

PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700


@dataclass(frozen=True, slots=True)
class Layout:
    """The file layout of one data dir (an absolute path)."""

    data_dir: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike[str]) -> Layout:
        """Validate and resolve ``data_dir`` (it need not exist yet)."""
        text = os.fspath(data_dir)
        if not text.strip():
            raise BrokerConfigError("the data dir must not be empty")
        resolved = Path(text).expanduser().resolve()
        # Mosquitto's config parser splits values on whitespace: a path with a space in it
        # would silently point the broker at another file.
        if any(ch.isspace() for ch in str(resolved)):
            raise BrokerConfigError(
                f"data dir {str(resolved)!r} contains whitespace, which Mosquitto's config "
                "file cannot express; choose a path without spaces"
            )
        if resolved.exists() and not resolved.is_dir():
            raise BrokerConfigError(f"data dir {resolved} exists and is not a directory")
        return cls(resolved)

    # -- broker ----------------------------------------------------------------------
    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def config_file(self) -> Path:
        return self.broker_dir / "mosquitto.conf"

    @property
    def acl_file(self) -> Path:
        return self.broker_dir / "acl"

    @property
    def password_file(self) -> Path:
        return self.broker_dir / "passwd"

    @property
    def lock_file(self) -> Path:
        """Serialises read-modify-write of the password file between processes."""
        return self.broker_dir / ".passwd.lock"

    @property
    def run_lock_file(self) -> Path:
        """Held (flock) by the one ``arete broker run`` serving this data dir."""
        return self.broker_dir / ".run.lock"

    @property
    def state_file(self) -> Path:
        return self.broker_dir / "broker.json"

    @property
    def persistence_dir(self) -> Path:
        return self.broker_dir / "persistence"

    @property
    def clientid_plugin(self) -> Path:
        """The built client-id plugin (``mosquitto.plugin``) the config loads."""
        return self.broker_dir / "arete_clientid.so"

    @property
    def clientid_plugin_stamp(self) -> Path:
        """The SHA-256 of the source the plugin was built from."""
        return self.broker_dir / "arete_clientid.so.sha256"

    # -- TLS -------------------------------------------------------------------------
    @property
    def tls_dir(self) -> Path:
        return self.broker_dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server.key"

    # -- accounts --------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    def secret_file(self, account: str) -> Path:
        """Where the password of a service account (maestro, viewer) is kept."""
        return self.secrets_dir / f"{account}.password"

    def cli_options_dir(self, account: str) -> Path:
        """Options files for Mosquitto's command-line clients, as ``account``.

        ``mosquitto_sub`` and ``mosquitto_pub`` read ``$XDG_CONFIG_HOME/<tool>``, so
        ``XDG_CONFIG_HOME=<this dir> mosquitto_sub ...`` logs in without a password on
        the command line (where every local user could read it in /proc).
        """
        return self.secrets_dir / f"{account}-cli"

    @property
    def agents_dir(self) -> Path:
        return self.data_dir / "agents"

    @property
    def agent_ca_cert(self) -> Path:
        """The CA copy that TLS agent configs name relatively (``ca_file = "ca.crt"``)."""
        return self.agents_dir / "ca.crt"

    def agent_config(self, agent_id: str) -> Path:
        try:
            return self.agents_dir / f"{validate_agent_id(agent_id)}.toml"
        except TopicError as exc:
            raise BrokerConfigError(str(exc)) from None

    def create(self) -> None:
        """Create the directories (0700); tighten them if they exist with looser modes."""
        for directory in (
            self.data_dir,
            self.broker_dir,
            self.persistence_dir,
            self.secrets_dir,
            self.agents_dir,
        ):
            make_private_dir(directory)


def describe(exc: OSError) -> str:
    """An OS error without the path (the caller's message names it)."""
    return exc.strerror or str(exc)


def make_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        if directory.stat().st_mode & 0o077:
            directory.chmod(PRIVATE_DIR)
    except FileExistsError:
        raise DataDirError(
            f"{directory} exists and is not a directory; move it away and retry"
        ) from None
    except OSError as exc:
        raise DataDirError(f"cannot create the directory {directory}: {describe(exc)}") from None


def write_private(path: Path, text: str, mode: int = PRIVATE_FILE) -> None:
    """Atomically replace ``path`` with ``text``; the file never exists with a looser mode.

    The temporary file is created 0600 in the same directory, synced, then renamed over
    the target, so a reader (Mosquitto on SIGHUP) sees the old or the new file, never half.
    """
    make_private_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataDirError(f"cannot write {path}: {describe(exc)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise DataDirError(f"cannot write {path}: {describe(exc)}") from None
        raise
