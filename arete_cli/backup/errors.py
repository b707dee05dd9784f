"""The one exception tree of ``arete backup``. Callers catch :class:`BackupError`.

Every error carries one sentence a person can act on; the CLI prints it as one
``error:`` line and exits with code 2.
"""

from __future__ import annotations


class BackupError(Exception):
    """Base of every error ``arete backup`` raises on purpose."""


class BackupKeyError(BackupError):
    """No backup key was given, or the key is not a valid one."""


class WrongKeyError(BackupError):
    """The archive was encrypted with another key."""


class ArchiveError(BackupError):
    """The file is not an Areté backup, or it is damaged or truncated."""


class SourceError(BackupError):
    """Something to back up cannot be read (the data dir, a database, a config file)."""


class TargetError(BackupError):
    """Where to write (the output dir, the data dir to restore into) cannot be used."""
