"""Writing an archive from a live data dir, listing archives and keeping the last N.

An archive is written under a temporary name in the output dir (mode 0600 from its
first byte), synced, and only then given its final name, so the output dir never holds
a partial archive under a real name; older archives are removed only after the new one
is complete.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from arete.version import __version__
from arete_cli.backup.crypto import EncryptingWriter
from arete_cli.backup.errors import TargetError
from arete_cli.backup.records import Entry, Manifest, write_dir, write_file, write_manifest
from arete_cli.backup.snapshot import Item, config_items, open_item, walk

NAME_RE: Final = re.compile(r"^arete-(\d{8}T\d{6}Z)(?:-(\d{1,4}))?\.backup$")
STAMP: Final = "%Y%m%dT%H%M%SZ"
DEFAULT_KEEP: Final = 7
LOCK_NAME: Final = ".arete-backup.lock"
_NO_HARD_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


@dataclass(frozen=True, slots=True)
class Listed:
    path: Path
    created: datetime
    size: int


@dataclass(frozen=True, slots=True)
class Created:
    path: Path
    manifest: Manifest
    removed: list[Path]


def archive_name(when: datetime, seq: int = 0) -> str:
    stamp = when.astimezone(UTC).strftime(STAMP)
    return f"arete-{stamp}.backup" if seq == 0 else f"arete-{stamp}-{seq}.backup"


def _order(name: str) -> tuple[str, int] | None:
    match = NAME_RE.match(name)
    return None if match is None else (match[1], int(match[2] or 0))


def archives_to_remove(names: list[str], keep: int) -> list[str]:
    """The archive names beyond the newest ``keep`` (other names are never touched)."""
    ours = sorted((order, name) for name in names if (order := _order(name)) is not None)
    return [name for _, name in ours[: max(0, len(ours) - keep)]]


def list_archives(out_dir: Path) -> list[Listed]:
    """The archives in ``out_dir``, oldest first."""
    try:
        names = [entry.name for entry in os.scandir(out_dir) if entry.is_file()]
    except OSError as exc:
        raise TargetError(f"cannot list {out_dir}: {exc.strerror or exc}") from None
    listed: list[Listed] = []
    for order, name in sorted((o, n) for n in names if (o := _order(n)) is not None):
        created = datetime.strptime(order[0], STAMP).replace(tzinfo=UTC)
        with contextlib.suppress(FileNotFoundError):
            listed.append(Listed(out_dir / name, created, (out_dir / name).stat().st_size))
    return listed


def create_archive(
    data_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    configs: list[Path] = [],  # noqa: B006 - never mutated
    keep: int = DEFAULT_KEEP,
    now: datetime | None = None,
) -> Created:
    """Back up ``data_dir`` (and ``configs``) into a new archive in ``out_dir``."""
    if keep < 1:
        raise TargetError("--keep must be at least 1 (the archive just made)")
    if out_dir.resolve() == data_dir.resolve():
        raise TargetError(
            f"--out {out_dir} is the data dir itself; write archives beside it (or in a "
            "sub-directory, which backups leave out)"
        )
    extra = config_items(configs)
    _private_dir(out_dir)
    with _exclusive(out_dir):
        return _create(data_dir, out_dir, key, extra=extra, keep=keep, now=now)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """One ``create`` per output dir at a time; what a killed one left there is removed.

    A backup killed mid-way (kill -9, power loss) leaves its staging dir — plaintext
    copies of the databases — and a partial archive: with the lock held, no other backup
    is running, so every such leftover is stale.
    """
    try:
        handle = (out_dir / LOCK_NAME).open("a")
    except OSError as exc:
        raise TargetError(f"cannot use {out_dir}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetError(
                f"another 'arete backup create' is writing into {out_dir}; try again when "
                "it has finished"
            ) from None
        for stale in out_dir.glob(".arete-backup-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.name.endswith(".partial"):
                stale.unlink(missing_ok=True)
        yield


def _create(
    data_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    extra: list[Item],
    keep: int,
    now: datetime | None,
) -> Created:
    dirs, items = walk(data_dir, exclude=out_dir)
    when = now or datetime.now(UTC)
    staging = Path(tempfile.mkdtemp(prefix=".arete-backup-staging-", dir=out_dir))
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".arete-backup-", suffix=".partial", dir=out_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=1024 * 1024) as out:
                writer = EncryptingWriter(out, key)
                for directory in dirs:
                    write_dir(writer, directory)
                entries = [e for item in [*items, *extra] if (e := _store(writer, item, staging))]
                manifest = Manifest(
                    format=1,
                    created_at=when.astimezone(UTC).isoformat(timespec="seconds"),
                    arete_version=__version__,
                    host=socket.gethostname(),
                    data_dir=str(data_dir.resolve()),
                    dirs=dirs,
                    files=entries,
                )
                write_manifest(writer, manifest)
                writer.close()
                out.flush()
                os.fsync(out.fileno())
            final = _link_final(tmp, out_dir, when)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise TargetError(f"cannot write the archive in {out_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync_dir(out_dir)
    removed = []
    for name in archives_to_remove([p.name for p in out_dir.iterdir()], keep):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
            removed.append(out_dir / name)
    return Created(final, manifest, removed)


def _store(writer: EncryptingWriter, item: Item, staging: Path) -> Entry | None:
    with open_item(item, staging) as handle:
        if handle is None:
            return None  # removed since the walk (a rotated temporary file)
        return write_file(writer, item.meta, handle)


def _link_final(tmp: Path, out_dir: Path, when: datetime) -> Path:
    """Give the complete archive its name; never replace an existing archive."""
    for seq in range(1000):
        final = out_dir / archive_name(when, seq)
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if final.exists():  # a file system without hard links (SMB, some FUSE)
                continue
            tmp.rename(final)
        return final
    raise TargetError(f"too many archives for {when:%Y-%m-%d %H:%M:%S} in {out_dir}")


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise TargetError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise TargetError(f"cannot create {path}: {exc.strerror or exc}") from None


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
