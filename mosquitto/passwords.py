"""Mosquitto 2.0 password hashes and the password file, made in Python.

``mosquitto_passwd -b FILE USER PASSWORD`` would put the password in a process's argv
(visible in ``ps`` to every user); hashing here keeps it inside this process. The format
is the one Mosquitto 2.0 writes and checks::

    user:$7$<iterations>$<base64 salt (12 bytes)>$<base64 PBKDF2-HMAC-SHA512 (64 bytes)>

Mosquitto's own default is 101 iterations, kept here: every password we store is 256
random bits (:func:`new_password`), which key stretching cannot make any harder to guess,
while each iteration costs the broker CPU at every connect of every agent.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from mosquitto.errors import PasswordFileError
from mosquitto.layout import describe, make_private_dir, write_private

HASH_ID: Final = 7  # Mosquitto's id for PBKDF2-HMAC-SHA512
ITERATIONS: Final = 101  # mosquitto_passwd's default
SALT_BYTES: Final = 12
HASH_BYTES: Final = 64
PASSWORD_BYTES: Final = 32

# A username is an agent id or a service account: nothing that could break a line.
_USERNAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_password() -> str:
    """A strong random password (256 bits, URL-safe, no shell metacharacters)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The Mosquitto 2.0 ``$7$`` hash of ``password``."""
    if not password:
        raise PasswordFileError("refusing to hash an empty password")
    if iterations < 1:
        raise PasswordFileError("iterations must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES)
    return (
        f"${HASH_ID}${iterations}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as Mosquitto would decide)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != str(HASH_ID) or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except binascii.Error:
        return False
    iterations = int(parts[2])
    if iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, len(expected)
    )
    return hmac.compare_digest(digest, expected)


def check_username(username: str) -> str:
    if not _USERNAME_RE.fullmatch(username):
        raise PasswordFileError(
            f"invalid broker username {username!r}: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return username


def read_password_file(path: Path) -> dict[str, str]:
    """``{username: hash}`` in file order; an absent file is an empty one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PasswordFileError(f"cannot read the password file {path}: {describe(exc)}") from None
    except UnicodeError:
        raise PasswordFileError(
            f"the password file {path} is not UTF-8 text; restore it from a backup, or "
            "delete it and re-add the agents (`arete broker run` re-creates the service "
            "accounts)"
        ) from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        username, sep, encoded = line.partition(":")
        if not sep or not username or not encoded:
            raise PasswordFileError(f"{path}:{number}: expected 'username:hash'")
        entries[username] = encoded
    return entries


def write_password_file(path: Path, entries: dict[str, str]) -> None:
    """Replace the password file atomically (mode 0600)."""
    for username, encoded in entries.items():
        check_username(username)
        if not encoded.startswith("$") or any(ch.isspace() for ch in encoded):
            raise PasswordFileError(f"refusing to write a malformed hash for {username!r}")
    write_private(path, "".join(f"{u}:{h}\n" for u, h in entries.items()))


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock so two ``arete agents ...`` never lose each other's change."""
    make_private_dir(lock_file.parent)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PasswordFileError(f"cannot open the lock file {lock_file}: {describe(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def set_user(path: Path, username: str, password: str) -> None:
    """Add ``username`` or replace its password (call under :func:`locked`)."""
    entries = read_password_file(path)
    entries[check_username(username)] = hash_password(password)
    write_password_file(path, entries)


def remove_user(path: Path, username: str) -> bool:
    """Remove ``username``; return whether it was there (call under :func:`locked`)."""
    entries = read_password_file(path)
    if entries.pop(username, None) is None:
        return False
    write_password_file(path, entries)
    return True
