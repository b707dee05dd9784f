"""API tokens one by one: listing, extra tokens, revoking, last use, and users.db files
from before the token columns changed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher

from web_api.auth.schema import MIGRATIONS
from web_api.auth.users import LAST_USED_STEP_S, UserError, UserStore


class CountingHasher(PasswordHasher):
    """A fast hasher that counts verifications (to see the cache skip argon2)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(tmp_path: Path, clock: Clock) -> UserStore:
    store = UserStore(tmp_path / "web" / "users.db", hasher=CountingHasher(), clock=clock)
    store.add_user("ci", "operator")
    store.add_user("bob", "viewer")
    return store


def token_id(token: str) -> str:
    return token.split("_")[1]


def test_a_users_tokens_are_listed_by_id_and_label_never_by_secret(users: UserStore) -> None:
    first = users.issue_token("ci", "deploy")
    second = users.create_token("ci", "nightly backup")
    listed = users.list_tokens("ci")
    assert [(t.id, t.label, t.last_used_at) for t in listed] == [
        (first.info.id, "deploy", None),
        (token_id(second), "nightly backup", None),
    ]
    assert first.token.startswith(f"arete_{first.info.id}_")
    assert first.token.split("_", 2)[2] not in repr(listed)
    assert users.list_tokens("bob") == []
    info = users.get_user("ci")
    assert info is not None
    assert info.tokens == 2


def test_revoking_one_token_ends_it_and_leaves_the_others(users: UserStore) -> None:
    leaked = users.create_token("ci", "leaked")
    kept = users.create_token("ci", "kept")
    assert users.revoke_token("ci", token_id(leaked)) is True
    assert users.verify_token(leaked) is None
    assert users.verify_token(kept) is not None
    assert [t.label for t in users.list_tokens("ci")] == ["kept"]
    assert users.revoke_token("ci", token_id(leaked)) is False


def test_a_token_is_revoked_only_through_its_own_user(users: UserStore) -> None:
    token = users.create_token("ci")
    assert users.revoke_token("bob", token_id(token)) is False
    assert users.revoke_token("nobody", token_id(token)) is False
    assert users.revoke_token("ci", "not-an-id") is False
    assert users.revoke_token("ci", "\ud800" * 16) is False
    assert users.verify_token(token) is not None


def test_an_unknown_user_has_no_token_list_and_gets_no_token(users: UserStore) -> None:
    with pytest.raises(UserError, match="no user 'nobody'"):
        users.list_tokens("nobody")
    with pytest.raises(UserError, match="no user"):
        users.issue_token("nobody", "x")
    with pytest.raises(UserError, match="no user"):
        users.list_tokens("\ud800")


@pytest.mark.parametrize("label", ["two\nlines", "tab\there", "x" * 201, "\ud800", "\x1b[31m"])
def test_a_label_is_short_and_printable(users: UserStore, label: str) -> None:
    with pytest.raises(UserError, match="printable"):
        users.issue_token("ci", label)
    assert users.list_tokens("ci") == []


def test_a_label_may_be_empty_or_unicode(users: UserStore) -> None:
    users.create_token("ci", "")
    users.create_token("ci", "déploiement « prod » " + "x" * 179)
    assert [len(t.label) for t in users.list_tokens("ci")] == [0, 200]


def test_last_use_is_recorded_at_most_once_a_step(users: UserStore, clock: Clock) -> None:
    token = users.create_token("ci")
    assert users.verify_token(token) is not None
    first_use = clock.now
    assert users.list_tokens("ci")[0].last_used_at == first_use
    clock.now += LAST_USED_STEP_S / 2
    users.verify_token(token)
    assert users.list_tokens("ci")[0].last_used_at == first_use
    clock.now += LAST_USED_STEP_S
    users.verify_token(token)
    assert users.list_tokens("ci")[0].last_used_at == clock.now
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    clock.now += LAST_USED_STEP_S
    assert users.verify_token(bad) is None
    assert users.list_tokens("ci")[0].last_used_at != clock.now  # a wrong secret is no use


def test_a_cached_token_skips_argon2_but_fails_at_once_when_revoked_elsewhere(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "users.db"
    hasher = CountingHasher()
    server = UserStore(path, hasher=hasher, clock=clock, token_cache_s=60)
    server.add_user("ci", "operator")
    token = server.create_token("ci")
    hasher.verified = 0
    assert server.verify_token(token) is not None
    assert server.verify_token(token) is not None
    assert hasher.verified == 1
    clock.now += 61
    assert server.verify_token(token) is not None
    assert hasher.verified == 2
    # `arete users revoke` is another process with its own connection.
    cli = UserStore(path, hasher=CountingHasher(), clock=clock)
    assert cli.revoke_token("ci", token_id(token))
    cli.close()
    assert server.verify_token(token) is None
    server.close()


def test_a_cached_token_fails_at_once_when_its_user_is_removed(
    tmp_path: Path, clock: Clock
) -> None:
    server = UserStore(tmp_path / "u.db", hasher=CountingHasher(), clock=clock, token_cache_s=60)
    server.add_user("ci", "operator")
    token = server.create_token("ci")
    assert server.verify_token(token) is not None
    server.remove_user("ci")
    assert server.verify_token(token) is None


# The users.db schema as released before versions (PRAGMA user_version 0).
UNVERSIONED_SCHEMA = """
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


def user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_users_db_from_before_versions_keeps_its_users_tokens_and_passwords(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.db"
    hasher = CountingHasher()
    secret = "s" * 43
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(UNVERSIONED_SCHEMA)
        conn.execute(
            "INSERT INTO users VALUES ('alice', 'admin', ?, 1.0)",
            (hasher.hash("a long password"),),
        )
        conn.execute(
            "INSERT INTO tokens VALUES ('0123456789abcdef', 'alice', ?, 'old', 2.0)",
            (hasher.hash(secret),),
        )
    store = UserStore(path, hasher=hasher)
    principal = store.verify_token(f"arete_0123456789abcdef_{secret}")
    assert principal is not None
    assert principal.name == "alice"
    assert store.verify_password("alice", "a long password") is not None
    [old] = store.list_tokens("alice")
    assert (old.id, old.label, old.created_at) == ("0123456789abcdef", "old", 2.0)
    assert old.last_used_at is not None  # just used above
    store.close()
    assert user_version(path) == len(MIGRATIONS)
    UserStore(path, hasher=hasher).close()  # a second open applies nothing twice
    assert user_version(path) == len(MIGRATIONS)


def test_a_users_db_from_a_newer_build_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    UserStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(UserError, match="newer than this build"):
        UserStore(path)


def test_a_file_that_is_not_a_users_db_is_refused_with_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    path.write_bytes(b"not sqlite at all " * 100)
    with pytest.raises(UserError, match="cannot open"):
        UserStore(path)
