"""``arete backup``: encrypted, verifiable archives of a running data dir (docs/backup.md).

- :mod:`.crypto` — the encrypted container (header, AES-256-GCM chunks); pure.
- :mod:`.records` — the records inside it, ended by the manifest; pure.
- :mod:`.snapshot` — what is taken from a live data dir (SQLite's online backup).
- :mod:`.archive` — writing archives, listing them, keeping the newest N.
- :mod:`.restore` — verifying an archive completely, then moving it into place.
- :mod:`.keys` — where the key comes from; :mod:`.cli` — ``arete backup ...``.

This module imports nothing heavy (``arete --help`` loads it): import the parts.
"""

from arete_cli.backup.errors import (
    ArchiveError,
    BackupError,
    BackupKeyError,
    SourceError,
    TargetError,
    WrongKeyError,
)

__all__ = [
    "ArchiveError",
    "BackupError",
    "BackupKeyError",
    "SourceError",
    "TargetError",
    "WrongKeyError",
]
