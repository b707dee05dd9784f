"""``arete broker passwd``'s core: set or remove one account of the password file, with
a password made elsewhere (a deployment tool pipes it in); only its hash is stored.

Idempotent: a password that already matches the stored hash changes nothing, so a
configuration tool's second run reports no change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from mosquitto.layout import Layout
from mosquitto.passwords import (
    check_username,
    hash_password,
    locked,
    read_password_file,
    verify_password,
    write_password_file,
)

Outcome = Literal["set", "unchanged", "removed", "absent"]
CHANGED: Final = frozenset({"set", "removed"})


def set_account(layout: Layout, username: str, password: str | None) -> Outcome:
    """Give ``username`` this password (None: remove the account); what was done.

    Raises :class:`~mosquitto.errors.BrokerError` subclasses (a bad username, an
    unreadable password file).
    """
    check_username(username)
    layout.create()
    with locked(layout.lock_file):
        entries = read_password_file(layout.password_file)
        current = entries.get(username)
        outcome: Outcome
        if password is None:
            outcome = "removed" if entries.pop(username, None) is not None else "absent"
        elif current is not None and verify_password(password, current):
            outcome = "unchanged"
        else:
            entries[username] = hash_password(password)
            outcome = "set"
        if outcome in CHANGED:
            write_password_file(layout.password_file, entries)
            _same_owner(layout.data_dir, layout.password_file, layout.lock_file)
    return outcome


def _same_owner(data_dir: Path, *paths: Path) -> None:
    """Run as root (a deployment tool), give ``paths`` to the data dir's owner: the broker
    runs as that user and must read them."""
    owner = data_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        for path in paths:
            os.chown(path, owner.st_uid, owner.st_gid)
