"""Reading an archive back: verify it completely, then move it into place.

Nothing is written where it matters before the whole archive has been decrypted,
authenticated and checked against its manifest (and every database passed SQLite's
quick check): the files are unpacked into a private directory beside a new target (then
renamed to it), or inside an existing empty one (then moved up, entry by entry). A wrong
key, a damaged or a truncated archive leaves the target, and its parents, as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from arete_cli.backup.crypto import DecryptingReader
from arete_cli.backup.errors import ArchiveError, BackupError, TargetError
from arete_cli.backup.records import (
    DirMeta,
    Entry,
    FileMeta,
    Manifest,
    blocks,
    check_manifest,
    read_record,
)


@dataclass
class Restored:
    manifest: Manifest
    configs_written: list[Path] = field(default_factory=list)
    configs_skipped: list[str] = field(default_factory=list)


def verify_archive(archive: Path, key: bytes) -> Manifest:
    """Decrypt and check the whole archive; write nothing."""
    return _unpack(archive, key, None)


def restore_archive(
    archive: Path, data_dir: Path, key: bytes, *, config_dir: Path | None = None
) -> Restored:
    """Restore ``archive`` into ``data_dir`` (new or empty); configs into ``config_dir``."""
    data_dir = data_dir.absolute()
    _check_empty(data_dir)
    _check_header(archive, key)  # a wrong key is refused before anything is made
    made = [p for p in reversed(data_dir.parents) if not p.exists()]
    # An existing (empty) target may be a mount point, or made by the deployment with its
    # owner and mode: unpack inside it and keep it. A new one is unpacked beside it.
    inside = data_dir.is_dir()
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        where = data_dir if inside else data_dir.parent
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=where))
    except OSError as exc:
        _remove_empty(made)
        raise TargetError(f"cannot prepare {data_dir}: {exc.strerror or exc}") from None
    done = False
    try:
        manifest = _unpack(archive, key, staging)
        configs = [e.path for e in manifest.files if e.area == "config"]
        if config_dir is not None:
            clashes = [name for name in configs if (config_dir / name).exists()]
            if clashes:
                raise TargetError(
                    f"{config_dir} already has {', '.join(clashes)}; move them away or give "
                    "another --config-dir"
                )
        unpacked = staging / "data"
        try:
            unpacked.mkdir(mode=0o700, exist_ok=True)
            if inside:
                # Still empty (but for our staging dir) now that the archive is known good.
                if any(p != staging for p in data_dir.iterdir()):
                    _check_empty(data_dir)
                for entry in sorted(unpacked.iterdir()):
                    entry.rename(data_dir / entry.name)
            else:
                _check_empty(data_dir)
                unpacked.chmod(0o700)
                unpacked.rename(data_dir)
        except OSError as exc:
            raise TargetError(f"cannot move the restored files to {data_dir}: {exc}") from None
        restored = Restored(manifest)
        if config_dir is None:
            restored.configs_skipped = configs
        else:
            restored.configs_written = _place_configs(staging / "config", config_dir, configs)
        done = True
        return restored
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done and not data_dir.exists():
            _remove_empty(made)  # the parents this restore made, so nothing is left


def _remove_empty(made: list[Path]) -> None:
    for path in reversed(made):
        with contextlib.suppress(OSError):
            path.rmdir()


def _check_header(archive: Path, key: bytes) -> None:
    try:
        with archive.open("rb") as handle:
            DecryptingReader(handle, key)
    except BackupError as exc:
        raise type(exc)(f"{archive}: {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {archive}: {exc.strerror or exc}") from None


def _check_empty(data_dir: Path) -> None:
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise TargetError(f"{data_dir} is a file; restore into a new or empty directory")
        if data_dir.exists() and any(data_dir.iterdir()):
            raise TargetError(
                f"{data_dir} is not empty; restore into a new or empty directory (move the "
                "old data dir away first, and stop the services that use it)"
            )
    except OSError as exc:
        raise TargetError(f"cannot use {data_dir}: {exc.strerror or exc}") from None


def _unpack(archive: Path, key: bytes, staging: Path | None) -> Manifest:
    try:
        handle = archive.open("rb")
    except OSError as exc:
        raise ArchiveError(f"cannot read {archive}: {exc.strerror or exc}") from None
    try:
        with handle:
            reader = DecryptingReader(handle, key)
            dirs: list[DirMeta] = []
            seen: list[Entry] = []
            while True:
                _, meta = read_record(reader)
                if isinstance(meta, DirMeta):
                    dirs.append(meta)
                    if staging is not None:
                        with _writing(staging):
                            _make_dir(staging / "data" / meta.path, meta.mode)
                elif isinstance(meta, FileMeta):
                    seen.append(_unpack_file(reader, meta, staging))
                else:
                    check_manifest(meta, seen, dirs)
                    reader.finish()
                    return meta
    except TargetError:
        raise
    except BackupError as exc:
        raise type(exc)(f"{archive}: {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {archive}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _writing(staging: Path | None) -> Iterator[None]:
    """An OS error while unpacking is about where we write (a full disk), not the archive."""
    try:
        yield
    except OSError as exc:
        where = staging.parent if staging is not None else "?"
        raise TargetError(f"cannot unpack into {where}: {exc.strerror or exc}") from None


def _make_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(mode | 0o700)  # the service owning it must get in


def _unpack_file(reader: DecryptingReader, meta: FileMeta, staging: Path | None) -> Entry:
    digest = hashlib.sha256()
    size = 0
    out = None
    target = None
    if staging is not None:
        target = staging / meta.area / meta.path
        with _writing(staging):
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            out = os.fdopen(fd, "wb", buffering=0)  # unbuffered: close() has nothing to fail
    with out if out is not None else contextlib.nullcontext():
        for block in blocks(reader):
            digest.update(block)
            size += len(block)
            if out is not None:
                with _writing(staging):
                    view = memoryview(block)
                    while view:
                        view = view[out.write(view) or 0 :]
        if out is not None:
            with _writing(staging):
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), meta.mode)
    if target is not None and meta.kind == "sqlite":
        _quick_check(target, meta.path)
    return Entry(meta.path, meta.area, meta.kind, meta.mode, size, digest.hexdigest())


def _quick_check(path: Path, name: str) -> None:
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?immutable=1", uri=True)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ArchiveError(f"the database {name} in it cannot be opened: {exc}") from None
    if result is None or result[0] != "ok":
        raise ArchiveError(f"the database {name} in it fails SQLite's check: {result}")


def _place_configs(unpacked: Path, config_dir: Path, names: list[str]) -> list[Path]:
    """Copy the configs (kept modes) into ``config_dir``; never replace a file."""
    written: list[Path] = []
    try:
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in names:
            source = unpacked / name
            target = config_dir / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out)
                os.fchmod(out.fileno(), source.stat().st_mode & 0o777)
            written.append(target)
    except OSError as exc:
        raise TargetError(f"cannot write the config files into {config_dir}: {exc}") from None
    return written
