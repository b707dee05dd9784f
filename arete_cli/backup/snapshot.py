"""What a backup takes from a running data dir, and how each file is read.

Every regular file under the data dir is taken, except what is rebuilt or meaningless
on another host (lock files, SQLite's ``-wal``/``-shm``/``-journal`` companions, the
disk reserve files, half-written temporary files, the broker's compiled plugin).
A SQLite database is never copied byte by byte while a service writes it: SQLite's
online backup API copies a consistent snapshot into a private temporary file (in the
output dir), which is streamed into the archive and deleted. Other files (the broker's
password and ACL files, keys, agent configs, Mosquitto's persistence file, which it
replaces by rename) are read as they are.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import quote

from arete_cli.backup.errors import SourceError
from arete_cli.backup.records import Area, DirMeta, FileMeta, Kind

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# SQLite companions (the online backup already holds their content) and our lock files.
SKIP_SUFFIXES: Final = ("-wal", "-shm", "-journal", ".lock")
SKIP_NAMES: Final = frozenset(
    {
        ".arete-disk-reserve",  # maestro.diskstate.RESERVE_NAME: re-made at start
        "agent-state.reserve",  # the agent's ballast file: re-made at start
        "arete_clientid.so",  # built for this host's CPU by 'arete broker run'
        "arete_clientid.so.sha256",
    }
)
BUSY_TIMEOUT_S: Final = 30.0


def skipped(name: str) -> bool:
    """Files a backup leaves out (see the module's docstring)."""
    return (
        name in SKIP_NAMES
        or name.endswith(SKIP_SUFFIXES)
        or (name.startswith(".") and name.endswith(".tmp"))  # write_private's temporaries
        or name.endswith(".db.new")  # Mosquitto's persistence file while it is written
    )


@dataclass(frozen=True, slots=True)
class Item:
    """One file to back up."""

    source: Path
    meta: FileMeta


def walk(data_dir: Path, exclude: Path | None = None) -> tuple[list[DirMeta], list[Item]]:
    """The directories and files under ``data_dir`` to back up, in a stable order.

    ``exclude`` (the output dir, when it lies inside the data dir) is left out: a backup
    must not hold the archives before it, nor grow by reading what it writes.
    """
    skip = exclude.resolve() if exclude is not None else None
    dirs: list[DirMeta] = []
    items: list[Item] = []

    def fail(exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # a dir removed while we walk: skip it
            raise SourceError(f"cannot read {exc.filename}: {exc.strerror or exc}")

    for top, subdirs, names in os.walk(data_dir, onerror=fail):
        here = Path(top)
        subdirs[:] = sorted(d for d in subdirs if skip is None or (here / d).resolve() != skip)
        rel_top = here.relative_to(data_dir)
        if here != data_dir:
            with contextlib.suppress(FileNotFoundError):  # removed while we walk
                dirs.append(DirMeta(rel_top.as_posix(), stat.S_IMODE(here.lstat().st_mode)))
        for name in sorted(names):
            path = here / name
            if skipped(name):
                continue
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    continue  # sockets, symlinks: nothing to restore
                kind: Kind = "sqlite" if _is_sqlite(path) else "file"
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
            rel = (rel_top / name).as_posix()
            items.append(Item(path, FileMeta(rel, "data", kind, stat.S_IMODE(info.st_mode))))
    return dirs, items


def config_items(configs: list[Path]) -> list[Item]:
    """The config files given with ``--config``, stored under their bare names."""
    items: list[Item] = []
    names: set[str] = set()
    for path in configs:
        if path.name in names:
            raise SourceError(
                f"two config files are named {path.name}; rename one (configs are stored "
                "by file name)"
            )
        try:
            info = path.stat()
        except OSError as exc:
            raise SourceError(f"cannot read the config file {path}: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"the config file {path} is not a regular file")
        names.add(path.name)
        area: Area = "config"
        items.append(Item(path, FileMeta(path.name, area, "file", stat.S_IMODE(info.st_mode))))
    return items


@contextlib.contextmanager
def open_item(item: Item, staging: Path) -> Iterator[BinaryIO | None]:
    """The bytes to store for ``item``; None if it vanished since the walk."""
    if item.meta.kind == "sqlite":
        with _sqlite_snapshot(item.source, staging) as handle:
            yield handle
        return
    try:
        handle = item.source.open("rb")
    except FileNotFoundError:
        yield None
        return
    except OSError as exc:
        raise SourceError(f"cannot read {item.source}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


@contextlib.contextmanager
def _sqlite_snapshot(path: Path, staging: Path) -> Iterator[BinaryIO | None]:
    """A consistent copy of the live database ``path`` (SQLite's online backup)."""
    fd, name = tempfile.mkstemp(prefix="snapshot-", suffix=".db", dir=staging)
    os.close(fd)
    copy = Path(name)
    try:
        try:
            # mode=rw: never create the file if it was removed since the walk.
            _online_backup(f"file:{quote(str(path))}?mode=rw", copy)
        except sqlite3.OperationalError:
            if not path.exists():
                yield None
                return
            if not _in_use(path):
                # A WAL database on a read-only mount (the backup unit's ReadOnlyPaths)
                # cannot be opened by SQLite once no one has it open (it would create its
                # -shm file). Without -wal and -shm no connection has it open: read the
                # file as it is.
                _online_backup(f"file:{quote(str(path))}?immutable=1", copy)
            else:
                raise
        with copy.open("rb") as handle:
            yield handle
    except sqlite3.Error as exc:
        # "database or disk is full" is about the copy, made in the output dir.
        raise SourceError(
            f"cannot back up the database {path} (via {staging.parent}): {exc}"
        ) from None
    finally:
        copy.unlink(missing_ok=True)


def _online_backup(uri: str, copy: Path) -> None:
    source = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        target = sqlite3.connect(copy)
        try:
            # All pages in one step: in WAL mode it is one read transaction, which
            # writers do not wait for, and a concurrent write cannot restart it.
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _in_use(path: Path) -> bool:
    """Whether a connection may have ``path`` open (its WAL or journal files exist)."""
    return any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm", "-journal"))
