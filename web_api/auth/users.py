"""Users, API tokens and sessions in ``DATA/web/users.db`` (mode 0600).

Only hashes are stored: argon2 for passwords and API tokens, SHA-256 for session ids
(32 random bytes need no slow hash). A token reads ``arete_<id>_<secret>``: the id
finds the row, the secret is verified against its argon2 hash. Calls block (argon2 is
deliberately slow, SQLite is a file): the web API runs them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from web_api.auth.roles import Role

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
TOKEN_RE: Final = re.compile(r"arete_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})")
MAX_PASSWORD: Final = 1024
ADMIN_NAME: Final = "admin"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    user       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY,
    user       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    expires_at REAL NOT NULL
);
"""


class UserError(Exception):
    """A bad name, role or password, an unknown user, or a name already taken."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user and how they proved it (``session`` or ``token``)."""

    name: str
    role: Role
    via: str

    @property
    def actor(self) -> str:
        """The name in the audit log and in command records."""
        return f"user:{self.name}"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    role: Role
    created_at: float
    has_password: bool
    tokens: int


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(
            "a user name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a"
            " letter or digit"
        )
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"unknown role {role!r} (viewer, operator, admin)") from None


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class UserStore:
    """One SQLite file; safe to call from several threads (one lock, short calls)."""

    def __init__(
        self,
        path: Path,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        # Verifying against a real hash when the user or token is unknown keeps the
        # answer time from telling which names exist.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- users ---------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str | None = None) -> UserInfo:
        check_name(name)
        chosen = check_role(role)
        hashed = self._hash_password(password) if password is not None else None
        now = self.clock()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} already exists")
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, chosen.value, hashed, now),
            )
        return UserInfo(name, chosen, now, hashed is not None, 0)

    def set_password(self, name: str, password: str) -> None:
        hashed = self._hash_password(password)
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name)
            )
            if cursor.rowcount == 0:
                raise UserError(f"no user {name!r}")
            conn.execute("DELETE FROM sessions WHERE user = ?", (name,))

    def remove_user(self, name: str) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def get_user(self, name: str) -> UserInfo | None:
        return next((u for u in self.list_users() if u.name == name), None)

    def list_users(self) -> list[UserInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT u.name, u.role, u.created_at, u.password_hash IS NOT NULL,"
                " (SELECT count(*) FROM tokens t WHERE t.user = u.name)"
                " FROM users u ORDER BY u.name"
            ).fetchall()
        return [UserInfo(n, Role(r), c, bool(p), t) for n, r, c, p, t in rows]

    def has_admin(self) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM users WHERE role = ? LIMIT 1", (Role.ADMIN.value,)
            ).fetchone()
        return row is not None

    def verify_password(self, name: str, password: str) -> Principal | None:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT role, password_hash FROM users WHERE name = ?", (name,)
            ).fetchone()
        if row is None or row[1] is None:
            self._verify(self._dummy_hash, password)
            return None
        if not self._verify(row[1], password):
            return None
        return Principal(name, Role(row[0]), "session")

    # -- API tokens ----------------------------------------------------------------------
    def create_token(self, name: str, label: str = "") -> str:
        """A new token for ``name``; shown once, only its hash is kept."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        hashed = self.hasher.hash(secret)
        with self._tx() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"no user {name!r}")
            conn.execute(
                "INSERT INTO tokens (id, user, hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (token_id, name, hashed, label[:200], self.clock()),
            )
        return f"arete_{token_id}_{secret}"

    def verify_token(self, token: str) -> Principal | None:
        match = TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            return None
        token_id, secret = match.groups()
        with self._lock:
            row = self._conn.execute(
                "SELECT t.hash, u.name, u.role FROM tokens t JOIN users u ON u.name = t.user"
                " WHERE t.id = ?",
                (token_id,),
            ).fetchone()
        if row is None:
            self._verify(self._dummy_hash, secret)
            return None
        if not self._verify(row[0], secret):
            return None
        return Principal(row[1], Role(row[2]), "token")

    # -- sessions ------------------------------------------------------------------------
    def create_session(self, name: str, ttl_s: float) -> tuple[str, float]:
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        expires_at = now + ttl_s
        with self._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO sessions (hash, user, expires_at) VALUES (?, ?, ?)",
                (session_hash(session_id), name, expires_at),
            )
        return session_id, expires_at

    def session_user(self, session_id: str) -> Principal | None:
        if not isinstance(session_id, str) or not 20 <= len(session_id) <= 100:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user"
                " WHERE s.hash = ? AND s.expires_at > ?",
                (session_hash(session_id), self.clock()),
            ).fetchone()
        return None if row is None else Principal(row[0], Role(row[1]), "session")

    def end_session(self, session_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE hash = ?", (session_hash(session_id),))

    # -- hashing -------------------------------------------------------------------------
    def _hash_password(self, password: str) -> str:
        if not isinstance(password, str) or not 8 <= len(password) <= MAX_PASSWORD:
            raise UserError(f"a password is 8-{MAX_PASSWORD} characters")
        return self.hasher.hash(password)

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return self.hasher.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def new_password() -> str:
    return secrets.token_urlsafe(18)


def ensure_admin(data_dir: Path) -> str | None:
    """Create user ``admin`` with a random one-time password if no admin exists.

    Returns the password (to print once; only its hash is stored), or None when an
    admin already exists.
    """
    store = UserStore(data_dir / "web" / "users.db")
    try:
        if store.has_admin():
            return None
        password = new_password()
        if store.get_user(ADMIN_NAME) is None:
            store.add_user(ADMIN_NAME, Role.ADMIN.value, password)
        else:  # an "admin" demoted earlier: give the name its role back
            store.remove_user(ADMIN_NAME)
            store.add_user(ADMIN_NAME, Role.ADMIN.value, password)
        return password
    finally:
        store.close()
