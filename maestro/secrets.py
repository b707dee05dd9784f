"""Secrets from files: the one reader the maestro's settings use (MQTT password, chat
tokens, Discord webhook, InfluxDB token), and the placeholder values every one refuses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from maestro.errors import ConfigError

MAX_SECRET_FILE_BYTES: Final = 64 * 1024
PLACEHOLDER_SECRETS: Final = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "password",
        "secret",
        "token",
        "my-token",
        "mytoken",
        "your-token",
        "maestro",
        "admin",
        "test",
        "todo",
        "xxx",
    }
)


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path``: a UTF-8 file of at most 64 KiB that only its owner can
    read. Raises :class:`ConfigError` naming ``what`` and the file (never its content)."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077 and os.name == "posix":
            raise ConfigError(
                f"{what} {path} is readable by other users (mode {mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"cannot read {what} {path}: it does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{what} {path} is too large to hold a secret")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
