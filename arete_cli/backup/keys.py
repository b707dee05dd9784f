"""Where the backup key comes from, and writing a new key file.

In order: ``--key-file``; ``ARETE_BACKUP_KEY_FILE``; ``ARETE_BACKUP_KEY`` (the key
itself, for a secret store that injects environment variables); the systemd credential
``$CREDENTIALS_DIRECTORY/backup-key`` (a unit with ``LoadCredentialEncrypted=backup-key:``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from arete_cli.backup.crypto import key_text, new_key, parse_key
from arete_cli.backup.errors import BackupKeyError

KEY_FILE_ENV: Final = "ARETE_BACKUP_KEY_FILE"
KEY_ENV: Final = "ARETE_BACKUP_KEY"
CREDENTIAL_NAME: Final = "backup-key"
MAX_KEY_FILE_BYTES: Final = 1024


def load_key(key_file: Path | None, environ: Mapping[str, str]) -> bytes:
    """The backup key from the first source that is set (see the module's docstring)."""
    if key_file is not None:
        return read_key_file(key_file)
    if environ.get(KEY_FILE_ENV):
        return read_key_file(Path(environ[KEY_FILE_ENV]))
    if environ.get(KEY_ENV):
        return parse_key(environ[KEY_ENV], f"${KEY_ENV}")
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return read_key_file(Path(credentials) / CREDENTIAL_NAME)
    raise BackupKeyError(
        f"no backup key: give --key-file FILE, set {KEY_FILE_ENV} or {KEY_ENV}, or load the "
        f"systemd credential {CREDENTIAL_NAME} (make a key with: arete backup key --out FILE)"
    )


def read_key_file(path: Path) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BackupKeyError(f"the backup key file {path} is not a regular file")
        if info.st_mode & stat.S_IROTH:
            raise BackupKeyError(
                f"the backup key file {path} is readable by every user; chmod 600 it "
                "(and consider the key exposed)"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise BackupKeyError(f"{path} is too large to be a backup key file")
        raw = path.read_bytes()
    except OSError as exc:
        raise BackupKeyError(
            f"cannot read the backup key file {path}: {exc.strerror or exc}"
        ) from None
    return parse_key(raw, str(path))


def write_key_file(path: Path) -> bytes:
    """A new key written to ``path`` (created 0600; an existing file is never replaced)."""
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupKeyError(
            f"{path} exists; a backup key is never overwritten (archives made with it "
            "could no longer be restored). Choose another path"
        ) from None
    except OSError as exc:
        raise BackupKeyError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key_text(key) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
