"""Secrets from files: the one reader the maestro's settings use (MQTT password, chat
tokens, Discord webhook, InfluxDB token, the signing key's permission check), the
placeholder values every one refuses, and ``$CREDENTIALS_DIRECTORY`` in file settings.

Under systemd, ``LoadCredential=`` / ``LoadCredentialEncrypted=`` put each secret in a
file of ``$CREDENTIALS_DIRECTORY`` (a private, non-swappable mount made for the
service). A file setting written ``"$CREDENTIALS_DIRECTORY/mqtt-password"`` names it;
the variable is expanded when the settings are read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final

from pydantic import BeforeValidator

from maestro.errors import ConfigError

CREDENTIALS_VAR: Final = "CREDENTIALS_DIRECTORY"
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
_CREDENTIALS_RE: Final = re.compile(
    r"^\$(?:\{CREDENTIALS_DIRECTORY\}|CREDENTIALS_DIRECTORY)(?=/|$)"
)


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS


def expand_credentials(raw: str | Path, env: Mapping[str, str] | None = None) -> Path:
    """``raw`` with a leading ``$CREDENTIALS_DIRECTORY`` (or ``${...}``) replaced.

    Raises :class:`ValueError` (a settings validation error) when it names the variable
    and the variable is not set: the service does not run under systemd with credentials.
    """
    text = str(raw)
    match = _CREDENTIALS_RE.match(text)
    if match is None:
        return Path(text)
    env = os.environ if env is None else env
    directory = env.get(CREDENTIALS_VAR, "")
    if not directory:
        raise ValueError(
            f"{text} names ${CREDENTIALS_VAR}, which is not set: run the service under "
            "systemd with LoadCredential=/LoadCredentialEncrypted=, or give a plain path"
        )
    return Path(directory + text[match.end() :])


def _expanded(value: object) -> object:
    return expand_credentials(value) if isinstance(value, str | Path) else value


# A file setting holding a secret: ``$CREDENTIALS_DIRECTORY/NAME`` is expanded.
SecretPath = Annotated[Path, BeforeValidator(_expanded)]


def in_credentials_dir(path: Path, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    directory = env.get(CREDENTIALS_VAR, "")
    if not directory:
        return False
    try:
        return path.resolve().is_relative_to(Path(directory).resolve())
    except OSError:
        return False


def permission_problem(path: Path, info: os.stat_result, what: str) -> str | None:
    """Why a secret file is too open, or None.

    A secret file must be readable by its owner only (0600, 0400). In the service's
    ``$CREDENTIALS_DIRECTORY`` systemd's own modes pass too (0440: group read), when the
    file belongs to this user or root: that directory is private to the service.
    """
    if os.name != "posix":
        return None
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return None
    if not mode & 0o007 and info.st_uid in {os.geteuid(), 0} and in_credentials_dir(path):
        return None
    return f"{what} {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path``: a UTF-8 file of at most 64 KiB that only its owner can
    read (or a systemd credential). Raises :class:`ConfigError` naming ``what`` and the
    file (never its content)."""
    try:
        problem = permission_problem(path, path.stat(), what)
        if problem is not None:
            raise ConfigError(problem)
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
