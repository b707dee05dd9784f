"""Users, API tokens and sessions in ``DATA/web/users.db`` (mode 0600).

Only hashes are stored: argon2 for passwords and API tokens, SHA-256 for session ids
(32 random bytes need no slow hash). A token reads ``arete_<id>_<secret>``: the id
finds the row, the secret is verified against its argon2 hash. The id is what lists
show and what revoking a single token takes; deleting the row ends the token. Calls
block (argon2 is deliberately slow, SQLite is a file): the web API runs them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
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
from web_api.auth.schema import MIGRATIONS

log = logging.getLogger("arete.web.users")

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
TOKEN_ID_RE: Final = re.compile(r"[0-9a-f]{16}")
TOKEN_RE: Final = re.compile(rf"arete_({TOKEN_ID_RE.pattern})_([A-Za-z0-9_-]{{20,100}})")
MAX_PASSWORD: Final = 1024
ADMIN_NAME: Final = "admin"

MAX_LABEL: Final = 200
# A token's last use is written at most this often: a hint for people, not a log.
LAST_USED_STEP_S: Final = 60.0


class UserError(Exception):
    """A bad name, role, password or token label, an unknown user, a name already
    taken, or a users.db this build cannot use."""


class LastAdminError(UserError):
    """The change would leave no admin (removing or demoting the last one)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user and how they proved it (``session`` or ``token``)."""

    name: str
    role: Role
    via: str
    # Set on the first admin, whose password was printed by `up`: only changing the
    # password is allowed until it is changed.
    must_change_password: bool = False

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


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown of an API token: its id (the ``<id>`` of ``arete_<id>_...``,
    which proves nothing without the secret), never the secret or its hash."""

    id: str
    label: str
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str
    info: TokenInfo


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


def check_label(label: str) -> str:
    if not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable():
        raise UserError(f"a token label is up to {MAX_LABEL} printable characters")
    return label


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class UserStore:
    """One SQLite file; safe to call from several threads (one lock, short calls).

    ``token_cache_s`` > 0 lets a token verified that recently skip argon2 while its
    row is unchanged; the row is still read on every call, so a revoked token (by this
    process or by ``arete users revoke`` in another) fails on its next use.
    """

    def __init__(
        self,
        path: Path,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
        token_cache_s: float = 0.0,
    ) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self.token_cache_s = token_cache_s
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise UserError(f"cannot open {path}: {exc}") from None
        except UserError:
            self._conn.close()
            raise
        # sha256 of a token -> (the hash it was verified against, when)
        self._verified: dict[str, tuple[str, float]] = {}
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
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT leaves it open
                    self._conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        if self._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return  # the usual case: no write lock needed
        # One transaction, the version read again inside it: a web server and a CLI
        # command opening an old file at once cannot both apply the same entry.
        with self._tx() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise UserError(
                    f"{self.path} is at schema version {version}, newer than this build"
                    f" knows ({len(MIGRATIONS)}); upgrade Areté"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    # -- users ---------------------------------------------------------------------------
    def add_user(
        self,
        name: str,
        role: str,
        password: str | None = None,
        *,
        must_change_password: bool = False,
    ) -> UserInfo:
        check_name(name)
        chosen = check_role(role)
        hashed = self._hash_password(password) if password is not None else None
        now = self.clock()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} already exists")
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at, must_change_password)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, chosen.value, hashed, now, int(must_change_password)),
            )
        return UserInfo(name, chosen, now, hashed is not None, 0)

    def set_password(self, name: str, password: str) -> None:
        """A new password: every session of the user ends, and no change is due any more."""
        hashed = self._hash_password(password)
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ?, must_change_password = 0 WHERE name = ?",
                (hashed, name),
            )
            if cursor.rowcount == 0:
                raise UserError(f"no user {name!r}")
            conn.execute("DELETE FROM sessions WHERE user = ?", (name,))

    def remove_user(self, name: str) -> bool:
        """Remove a user; :class:`LastAdminError` for the last admin (checked in the same
        transaction, so two admins removing each other at once cannot leave none)."""
        with self._tx() as conn:
            self._refuse_last_admin(conn, name, "removed")
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def set_role(self, name: str, role: str) -> None:
        """Change a user's role; :class:`LastAdminError` when it demotes the last admin."""
        chosen = check_role(role)
        with self._tx() as conn:
            if chosen is not Role.ADMIN:
                self._refuse_last_admin(conn, name, "demoted")
            cursor = conn.execute("UPDATE users SET role = ? WHERE name = ?", (chosen.value, name))
            if cursor.rowcount == 0:
                raise UserError(f"no user {name!r}")

    @staticmethod
    def _refuse_last_admin(conn: sqlite3.Connection, name: str, what: str) -> None:
        row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] != Role.ADMIN.value:
            return
        admins = conn.execute(
            "SELECT count(*) FROM users WHERE role = ?", (Role.ADMIN.value,)
        ).fetchone()[0]
        if admins <= 1:
            raise LastAdminError(
                f"{name!r} is the last admin and cannot be {what}; make another admin first"
            )

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
                "SELECT role, password_hash, must_change_password FROM users WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None or row[1] is None:
            self._verify(self._dummy_hash, password)
            return None
        if not self._verify(row[1], password):
            return None
        return Principal(name, Role(row[0]), "session", bool(row[2]))

    # -- API tokens ----------------------------------------------------------------------
    def issue_token(self, name: str, label: str = "") -> NewToken:
        """A new token for ``name``; shown once, only its hash is kept."""
        check_label(label)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        hashed = self.hasher.hash(secret)
        now = self.clock()
        with self._tx() as conn:
            if not self._user_exists(conn, name):
                raise UserError(f"no user {name!r}")
            conn.execute(
                "INSERT INTO tokens (id, user, hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (token_id, name, hashed, label, now),
            )
        return NewToken(f"arete_{token_id}_{secret}", TokenInfo(token_id, label, now, None))

    def create_token(self, name: str, label: str = "") -> str:
        return self.issue_token(name, label).token

    def list_tokens(self, name: str) -> list[TokenInfo]:
        """The tokens of ``name``, oldest first; an unknown user is a UserError."""
        with self._lock:
            if not self._user_exists(self._conn, name):
                raise UserError(f"no user {name!r}")
            rows = self._conn.execute(
                "SELECT id, label, created_at, last_used_at FROM tokens WHERE user = ?"
                " ORDER BY created_at, rowid",
                (name,),
            ).fetchall()
        return [TokenInfo(*row) for row in rows]

    def revoke_token(self, name: str, token_id: str) -> bool:
        """Delete one token of ``name``; False when ``name`` has no such token."""
        if not NAME_RE.fullmatch(name) or not TOKEN_ID_RE.fullmatch(token_id):
            return False
        with self._tx() as conn:
            deleted = conn.execute(
                "DELETE FROM tokens WHERE id = ? AND user = ?", (token_id, name)
            ).rowcount
        return deleted > 0

    def verify_token(self, token: str) -> Principal | None:
        match = TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            return None
        token_id, secret = match.groups()
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            row = self._conn.execute(
                "SELECT t.hash, t.last_used_at, u.name, u.role, u.must_change_password"
                " FROM tokens t JOIN users u ON u.name = t.user WHERE t.id = ?",
                (token_id,),
            ).fetchone()
            memo = self._verified.get(key)
        if row is None:
            self._verify(self._dummy_hash, secret)
            return None
        hashed, last_used_at, name, role, must_change = row
        # The same token string verified against this very hash a moment ago: argon2
        # would say yes again. A revoked token has no row, so it never gets here.
        if memo is None or memo[0] != hashed or not 0 <= now - memo[1] < self.token_cache_s:
            if not self._verify(hashed, secret):
                return None
            self._remember(key, hashed, now)
        if last_used_at is None or now - last_used_at >= LAST_USED_STEP_S:
            self._note_use(token_id, now)
        return Principal(name, Role(role), "token", bool(must_change))

    def _remember(self, key: str, hashed: str, now: float) -> None:
        if self.token_cache_s <= 0:
            return
        with self._lock:
            if len(self._verified) >= 1000:
                self._verified.clear()
            self._verified[key] = (hashed, now)

    def _note_use(self, token_id: str, now: float) -> None:
        try:
            with self._tx() as conn:
                conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, token_id))
        except sqlite3.OperationalError as exc:
            # The last use is a hint: a busy or read-only file must not refuse a good token.
            log.warning("cannot record a token's use token_id=%s error=%s", token_id, exc)

    @staticmethod
    def _user_exists(conn: sqlite3.Connection, name: str) -> bool:
        # A name that cannot exist is not looked up (nor encoded: it may hold anything).
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return False
        return conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

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
                "SELECT u.name, u.role, u.must_change_password"
                " FROM sessions s JOIN users u ON u.name = s.user"
                " WHERE s.hash = ? AND s.expires_at > ?",
                (session_hash(session_id), self.clock()),
            ).fetchone()
        return None if row is None else Principal(row[0], Role(row[1]), "session", bool(row[2]))

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
    admin already exists. It must be changed at the first sign-in: until then the API
    answers 403 ``password_change_required`` to everything but ``POST /auth/password``.
    """
    store = UserStore(data_dir / "web" / "users.db")
    try:
        if store.has_admin():
            return None
        password = new_password()
        if store.get_user(ADMIN_NAME) is not None:  # an "admin" demoted earlier: replace it
            store.remove_user(ADMIN_NAME)
        store.add_user(ADMIN_NAME, Role.ADMIN.value, password, must_change_password=True)
        return password
    finally:
        store.close()
