"""The plaintext inside an archive: a stream of records, ended by the manifest.

::

    record    type (1) | meta length (4) | meta (JSON)  [ | data blocks ]
    type      D  a directory        meta: path, mode
              F  a file             meta: path, area, kind, mode; then data blocks:
                                    length (4) | bytes, repeated, ended by a length 0
              M  the manifest       meta: format, when, what (every file's size, sha256)

Files are streamed in blocks, so a database of any size passes through a fixed amount of
memory, and its size and digest are known (for the manifest) once it has been read.
``area`` says where a file goes back: ``data`` under the data dir, ``config`` to the
directory given for config files. Paths are relative, ``/``-separated and may not climb
out (``..``), whatever the archive says.

No I/O of its own: functions read from and write to file-like objects.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import BinaryIO, Final, Literal, Protocol

import msgspec

from arete_cli.backup.errors import ArchiveError

DIR: Final = b"D"
FILE: Final = b"F"
MANIFEST: Final = b"M"
BLOCK_BYTES: Final = 1024 * 1024
MAX_META_BYTES: Final = 64 * 1024
MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024
MAX_PATH_CHARS: Final = 1024
_U32: Final = struct.Struct(">I")

Area = Literal["data", "config"]
Kind = Literal["sqlite", "file"]


class DirMeta(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    mode: int


class FileMeta(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    area: Area
    kind: Kind
    mode: int


class Entry(msgspec.Struct, forbid_unknown_fields=True):
    """One file as the manifest lists it."""

    path: str
    area: Area
    kind: Kind
    mode: int
    size: int
    sha256: str


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    created_at: str
    arete_version: str
    host: str
    data_dir: str
    dirs: list[DirMeta]
    files: list[Entry]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Source(Protocol):
    def read_exact(self, size: int) -> bytes: ...


def check_path(path: str, area: Area = "data") -> str:
    """``path`` if it is a safe relative path (a bare name for a config file)."""
    parts = path.split("/")
    bad = (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
        or (area == "config" and len(parts) != 1)
    )
    if bad:
        raise ArchiveError(f"it is damaged (unsafe path {path!r} in it)")
    return path


def check_mode(mode: int) -> int:
    if not 0 <= mode <= 0o777:
        raise ArchiveError(f"it is damaged (impossible file mode {mode:o})")
    return mode


def _write_record(out: Sink, kind: bytes, meta: bytes) -> None:
    out.write(kind + _U32.pack(len(meta)) + meta)


def write_dir(out: Sink, meta: DirMeta) -> None:
    _write_record(out, DIR, msgspec.json.encode(meta))


def write_file(out: Sink, meta: FileMeta, data: BinaryIO) -> Entry:
    """Stream ``data`` to its end as one file record; its manifest entry."""
    _write_record(out, FILE, msgspec.json.encode(meta))
    digest = hashlib.sha256()
    size = 0
    while block := data.read(BLOCK_BYTES):
        out.write(_U32.pack(len(block)))
        out.write(block)
        digest.update(block)
        size += len(block)
    out.write(_U32.pack(0))
    return Entry(meta.path, meta.area, meta.kind, meta.mode, size, digest.hexdigest())


def write_manifest(out: Sink, manifest: Manifest) -> None:
    _write_record(out, MANIFEST, msgspec.json.encode(manifest))


def read_record(src: Source) -> tuple[bytes, DirMeta | FileMeta | Manifest]:
    """The next record's type and meta (a file's data blocks follow: :func:`blocks`)."""
    kind = src.read_exact(1)
    (length,) = _U32.unpack(src.read_exact(_U32.size))
    limit = MAX_MANIFEST_BYTES if kind == MANIFEST else MAX_META_BYTES
    if length > limit:
        raise ArchiveError("it is damaged (an entry's description is impossibly long)")
    raw = src.read_exact(length)
    target: type[DirMeta | FileMeta | Manifest]
    if kind == DIR:
        target = DirMeta
    elif kind == FILE:
        target = FileMeta
    elif kind == MANIFEST:
        target = Manifest
    else:
        raise ArchiveError(f"it is damaged (unknown record type {kind!r})")
    try:
        meta = msgspec.json.decode(raw, type=target)
    except msgspec.DecodeError as exc:
        raise ArchiveError(f"it is damaged (unreadable entry: {exc})") from None
    if isinstance(meta, DirMeta | FileMeta):
        check_path(meta.path, meta.area if isinstance(meta, FileMeta) else "data")
        check_mode(meta.mode)
    return kind, meta


def blocks(src: Source) -> Iterator[bytes]:
    """The data blocks of the file record just read, until its end marker."""
    while True:
        (length,) = _U32.unpack(src.read_exact(_U32.size))
        if length == 0:
            return
        if length > BLOCK_BYTES:
            raise ArchiveError("it is damaged (a data block is impossibly long)")
        yield src.read_exact(length)


def check_manifest(manifest: Manifest, seen: list[Entry], dirs: list[DirMeta]) -> None:
    """What was read must be exactly what the manifest lists, byte for byte."""
    if manifest.format != 1:
        raise ArchiveError(f"it is damaged (manifest format {manifest.format})")
    if manifest.files != seen or manifest.dirs != dirs:
        listed = {(e.area, e.path): e for e in manifest.files}
        for entry in seen:
            if listed.get((entry.area, entry.path)) != entry:
                raise ArchiveError(
                    f"it is damaged ({entry.path} differs from the manifest's size or sha256)"
                )
        raise ArchiveError("it is damaged (its contents differ from its manifest)")
