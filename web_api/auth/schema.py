"""The tables of ``DATA/web/users.db``, as migrations that ``UserStore`` applies in order."""

from __future__ import annotations

from typing import Final

# Frozen once released: a change is a new entry, never an edit. ``PRAGMA user_version``
# counts the entries a file has; files made before there were versions are at 0 but
# already hold the first entry's tables, hence its IF NOT EXISTS. A file from a newer
# build is refused (its tables may mean something this build does not know).
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE IF NOT EXISTS users (
            name          TEXT PRIMARY KEY,
            role          TEXT NOT NULL,
            password_hash TEXT,
            created_at    REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS tokens (
            id         TEXT PRIMARY KEY,
            user       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            hash       TEXT NOT NULL,
            label      TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS sessions (
            hash       TEXT PRIMARY KEY,
            user       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            expires_at REAL NOT NULL
        )""",
    ),
    ("ALTER TABLE tokens ADD COLUMN last_used_at REAL",),
    # 1: the password was made for the user (the first admin's, printed by `up`) and must
    # be changed before anything else.
    ("ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0",),
)
