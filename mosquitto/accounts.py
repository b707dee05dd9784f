"""Broker accounts: the ``maestro`` and ``viewer`` service accounts, and one per agent.

Plain passwords live only in files readable by their owner (``DATA/secrets/*.password``
for the service accounts, ``DATA/agents/<id>.toml`` for agents); the password file the
broker reads holds hashes only.
"""

from __future__ import annotations

import stat
from pathlib import Path

from arete.errors import TopicError
from arete.topics import validate_agent_id
from mosquitto.acl import SERVICE_ACCOUNTS
from mosquitto.errors import AccountExists, BrokerConfigError, PasswordFileError
from mosquitto.layout import PRIVATE_FILE, Layout, write_private
from mosquitto.passwords import (
    hash_password,
    locked,
    new_password,
    read_password_file,
    verify_password,
    write_password_file,
)


def _read_secret(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_IMODE(mode) & 0o077:
        path.chmod(PRIVATE_FILE)  # a copy or an editor loosened it: tighten before use
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PasswordFileError(f"cannot read {path}: {exc}") from None
    return password or None


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
            current = entries.get(account)
            if current is None or not verify_password(password, current):
                entries[account] = hash_password(password)
                changed = True
        if changed:
            write_password_file(layout.password_file, entries)
    return created


def service_password(layout: Layout, account: str) -> str:
    """The password of ``maestro`` or ``viewer`` (after :func:`ensure_service_accounts`)."""
    if account not in SERVICE_ACCOUNTS:
        raise BrokerConfigError(f"{account!r} is not a service account")
    password = _read_secret(layout.secret_file(account))
    if password is None:
        raise PasswordFileError(
            f"{layout.secret_file(account)} is missing; run `arete broker run` to create it"
        )
    return password


def add_agent_credentials(layout: Layout, agent_id: str, *, rotate: bool = False) -> str:
    """Create (or with ``rotate``, replace) an agent's account; its new password.

    The running broker accepts the new password only after it reloads (SIGHUP).
    """
    try:
        validate_agent_id(agent_id)
    except TopicError as exc:
        raise BrokerConfigError(str(exc)) from None
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
    return password


def agent_ids(layout: Layout) -> list[str]:
    """Agents that have broker credentials, in the order they were added."""
    entries = read_password_file(layout.password_file)
    return [name for name in entries if name not in SERVICE_ACCOUNTS]
