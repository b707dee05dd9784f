"""Broker accounts: the ``maestro`` and ``viewer`` service accounts, and one per agent.

Plain passwords live only in files readable by their owner (``DATA/secrets/*.password``
for the service accounts, ``DATA/agents/<id>.toml`` for agents); the password file the
broker reads holds hashes only.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from arete import clientids
from arete.errors import TopicError
from arete.topics import validate_agent_id
from mosquitto.acl import MAESTRO, SERVICE_ACCOUNTS, VIEWER
from mosquitto.errors import (
    AccountExists,
    BrokerConfigError,
    DataDirError,
    PasswordFileError,
    UnknownAgent,
)
from mosquitto.layout import PRIVATE_FILE, Layout, describe, make_private_dir, write_private
from mosquitto.passwords import (
    hash_password,
    locked,
    new_password,
    read_password_file,
    remove_user,
    verify_password,
    write_password_file,
)


def _read_secret(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            path.chmod(PRIVATE_FILE)  # a copy or an editor loosened it: tighten before use
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PasswordFileError(f"cannot read {path}: {describe(exc)}") from None
    except UnicodeError:
        raise PasswordFileError(
            f"{path} is not UTF-8 text; delete it and run `arete broker run` to issue a new "
            "password for that account"
        ) from None
    return password or None


# Which of Mosquitto's command-line clients get an options file, per service account.
CLI_TOOLS: Final = {VIEWER: ("mosquitto_sub",), MAESTRO: ("mosquitto_sub", "mosquitto_pub")}


def cli_options(account: str, password: str) -> str:
    """An options file for ``mosquitto_sub``/``mosquitto_pub`` logging in as ``account``.

    ``-I`` gives each run a client id of its own (``<account>:cli-<pid>``), one the
    broker lets this account use (``arete.clientids``).
    """
    return "\n".join(
        [
            "# Written by `arete broker run`. Use with XDG_CONFIG_HOME set to this file's",
            "# folder, so the password never appears on a command line (docs/topics.md).",
            f"-u {account}",
            f"-P {password}",
            f"-I {clientids.client_id(account, 'cli-')}",
            "",
        ]
    )


def _write_cli_options(layout: Layout, account: str, password: str) -> None:
    directory = layout.cli_options_dir(account)
    make_private_dir(directory)
    wanted = cli_options(account, password)
    for tool in CLI_TOOLS.get(account, ()):
        path = directory / tool
        try:
            if path.read_text(encoding="utf-8") == wanted:
                continue
        except (OSError, UnicodeError):
            pass  # missing or unreadable: write it again
        write_private(path, wanted)


def ensure_service_accounts(layout: Layout) -> list[Path]:
    """Create the maestro and viewer accounts if needed; the secret files created now.

    Existing passwords are kept. A secret file that is missing gets a new password (the
    old one is unrecoverable); a password file that lost an account gets its hash back.
    """
    created: list[Path] = []
    with locked(layout.lock_file):
        entries = read_password_file(layout.password_file)
        changed = not layout.password_file.exists()
        for account in SERVICE_ACCOUNTS:
            secret_file = layout.secret_file(account)
            password = _read_secret(secret_file)
            if password is None:
                password = new_password()
                write_private(secret_file, password + "\n")
                created.append(secret_file)
            _write_cli_options(layout, account, password)
            current = entries.get(account)
            if current is None or not verify_password(password, current):
                entries[account] = hash_password(password)
                changed = True
        if changed:
            write_password_file(layout.password_file, entries)
    return created


def _checked_agent_id(agent_id: str) -> str:
    try:
        return validate_agent_id(agent_id)
    except TopicError as exc:
        raise BrokerConfigError(str(exc)) from None


def add_agent_credentials(
    layout: Layout,
    agent_id: str,
    *,
    rotate: bool = False,
    on_added: Callable[[str], None] | None = None,
) -> str:
    """Create (or with ``rotate``, replace) an agent's account; its new password.

    ``on_added(password)`` runs while the password file is still locked: that is where
    the agent's config is written, so two concurrent rotations can never leave a config
    holding a password the password file no longer has. The running broker accepts the
    new password only after it reloads (SIGHUP).
    """
    _checked_agent_id(agent_id)
    password = new_password()
    with locked(layout.lock_file):
        entries = read_password_file(layout.password_file)
        if agent_id in entries and not rotate:
            raise AccountExists(
                f"agent {agent_id!r} already has broker credentials; "
                "pass --rotate to issue a new password (the old one stops working)"
            )
        entries[agent_id] = hash_password(password)
        write_password_file(layout.password_file, entries)
        if on_added is not None:
            on_added(password)
    return password


def remove_agent_credentials(layout: Layout, agent_id: str) -> list[Path]:
    """Revoke an agent: drop its account and delete its config; what was removed.

    Raises :class:`UnknownAgent` when the agent has neither. The running broker refuses
    the agent (and drops its connection) only after it reloads (SIGHUP).
    """
    _checked_agent_id(agent_id)
    config = layout.agent_config(agent_id)
    removed: list[Path] = []
    with locked(layout.lock_file):
        if remove_user(layout.password_file, agent_id):
            removed.append(layout.password_file)
        try:
            config.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DataDirError(f"cannot delete {config}: {describe(exc)}") from None
        else:
            removed.append(config)
    if not removed:
        raise UnknownAgent(
            f"no agent {agent_id!r} in {layout.data_dir}; "
            f"see `arete agents list --data-dir {layout.data_dir}`"
        )
    return removed


def agent_ids(layout: Layout) -> list[str]:
    """Agents that have broker credentials, in the order they were added.

    Accounts added by hand whose names are not valid agent ids (``admin``, ...) are left
    out: they are neither agents nor ours to manage.
    """
    entries = read_password_file(layout.password_file)
    ids = []
    for name in entries:
        try:
            ids.append(validate_agent_id(name))
        except TopicError:
            continue
    return ids
