"""The backup archive format: what one key seals only that key opens, and any change,
cut or addition to an archive is refused before a byte of it is believed."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from arete_cli.backup.archive import archive_name, archives_to_remove
from arete_cli.backup.crypto import (
    HEADER_BYTES,
    DecryptingReader,
    EncryptingWriter,
    key_id,
    key_text,
    new_key,
    parse_key,
)
from arete_cli.backup.errors import ArchiveError, BackupKeyError, WrongKeyError
from arete_cli.backup.keys import load_key, read_key_file, write_key_file
from arete_cli.backup.records import (
    DirMeta,
    FileMeta,
    Manifest,
    blocks,
    check_manifest,
    check_path,
    read_record,
    write_dir,
    write_file,
    write_manifest,
)

KEY = bytes(range(32))
CHUNK = 64  # tiny chunks, so a few hundred bytes span many of them


def seal(plain: bytes, key: bytes = KEY, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, key, chunk)
    for start in range(0, len(plain), 37):  # writes that do not line up with chunks
        writer.write(plain[start : start + 37])
    writer.close()
    return out.getvalue()


def unseal(sealed: bytes, key: bytes = KEY) -> bytes:
    reader = DecryptingReader(io.BytesIO(sealed), key)
    data = reader.read(10**9)
    reader.finish()
    return data


PLAIN = os.urandom(1000)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 1000])
def test_what_is_sealed_comes_back_byte_for_byte(size: int) -> None:
    assert unseal(seal(PLAIN[:size])) == PLAIN[:size]


def test_the_same_data_seals_differently_each_time() -> None:
    assert seal(PLAIN) != seal(PLAIN)  # a fresh salt, so a fresh per-archive key


def test_the_plaintext_is_not_in_the_archive() -> None:
    secret = b"the maestro password is hunter2 " * 10
    assert b"hunter2" not in seal(secret)


def test_a_wrong_key_is_named_as_such_with_both_key_ids() -> None:
    other = new_key()
    with pytest.raises(WrongKeyError, match=f"{key_id(KEY)}.*{key_id(other)}"):
        unseal(seal(PLAIN), other)


def test_every_flipped_byte_is_refused() -> None:
    sealed = seal(PLAIN[:300])
    for offset in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[offset] ^= 0x01
        with pytest.raises((ArchiveError, WrongKeyError)):
            unseal(bytes(damaged))


def test_every_truncation_is_refused() -> None:
    sealed = seal(PLAIN[:300])
    for length in range(len(sealed)):
        with pytest.raises(ArchiveError):
            unseal(sealed[:length])


def test_a_cut_exactly_between_chunks_is_refused() -> None:
    sealed = seal(PLAIN[: 3 * CHUNK])  # three full chunks and an empty last one
    record = 4 + CHUNK + 16
    cut = sealed[: HEADER_BYTES + 2 * record]
    with pytest.raises(ArchiveError, match="fails authentication"):
        unseal(cut)


def test_bytes_appended_after_the_last_chunk_are_refused() -> None:
    sealed = seal(PLAIN[:100])
    with pytest.raises(ArchiveError):
        unseal(sealed + seal(b"more")[HEADER_BYTES:])


def test_swapped_chunks_are_refused() -> None:
    sealed = seal(PLAIN[: 2 * CHUNK])
    record = 4 + CHUNK + 16
    first = sealed[HEADER_BYTES : HEADER_BYTES + record]
    second = sealed[HEADER_BYTES + record : HEADER_BYTES + 2 * record]
    swapped = sealed[:HEADER_BYTES] + second + first + sealed[HEADER_BYTES + 2 * record :]
    with pytest.raises(ArchiveError):
        unseal(swapped)


def test_a_file_that_is_not_an_archive_says_so() -> None:
    with pytest.raises(ArchiveError, match="not an Areté backup"):
        unseal(b"PK\x03\x04 a zip file")
    with pytest.raises(ArchiveError, match="not an Areté backup"):
        unseal(b"")


def test_a_newer_format_version_says_which_it_is() -> None:
    sealed = bytearray(seal(PLAIN[:10]))
    sealed[8] = 2
    with pytest.raises(ArchiveError, match="backup format 2"):
        unseal(bytes(sealed))


# -- records ---------------------------------------------------------------------------
def pack(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, KEY, CHUNK)
    dirs = [DirMeta("maestro", 0o700)]
    write_dir(writer, dirs[0])
    entries = [
        write_file(writer, FileMeta(path, "data", "file", 0o600), io.BytesIO(data))
        for path, data in files.items()
    ]
    manifest = Manifest(1, "2026-12-06T09:00:00+00:00", "0.1.0", "h", "/d", dirs, entries)
    write_manifest(writer, manifest)
    writer.close()
    return out.getvalue()


def unpack(sealed: bytes) -> dict[str, bytes]:
    reader = DecryptingReader(io.BytesIO(sealed), KEY)
    files: dict[str, bytes] = {}
    dirs: list[DirMeta] = []
    seen = []
    while True:
        _, meta = read_record(reader)
        if isinstance(meta, DirMeta):
            dirs.append(meta)
        elif isinstance(meta, FileMeta):
            data = b"".join(blocks(reader))
            files[meta.path] = data
            seen.append(write_file(io.BytesIO(), meta, io.BytesIO(data)))
        else:
            check_manifest(meta, seen, dirs)
            reader.finish()
            return files


def test_records_and_manifest_round_trip() -> None:
    files = {"maestro/main.db": os.urandom(3000), "broker/passwd": b"a1:$7$...\n", "empty": b""}
    assert unpack(pack(files)) == files


def test_a_manifest_that_disagrees_with_the_files_is_refused() -> None:
    meta = FileMeta("broker/passwd", "data", "file", 0o600)
    real = write_file(io.BytesIO(), meta, io.BytesIO(b"abc"))
    listed = write_file(io.BytesIO(), meta, io.BytesIO(b"abd"))
    manifest = Manifest(1, "t", "v", "h", "/d", [], [listed])
    with pytest.raises(ArchiveError, match="broker/passwd differs"):
        check_manifest(manifest, [real], [])
    missing = write_file(io.BytesIO(), FileMeta("acl", "data", "file", 0o600), io.BytesIO())
    with pytest.raises(ArchiveError, match="differ from its manifest"):
        check_manifest(Manifest(1, "t", "v", "h", "/d", [], [real, missing]), [real], [])


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\x00b", "x" * 2000]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(ArchiveError, match="unsafe path"):
        check_path(path)


def test_a_config_is_a_bare_file_name() -> None:
    assert check_path("control.toml", "config") == "control.toml"
    with pytest.raises(ArchiveError):
        check_path("etc/control.toml", "config")


# -- keys ------------------------------------------------------------------------------
def test_key_text_round_trips_and_junk_is_refused() -> None:
    key = new_key()
    assert parse_key(key_text(key) + "\n", "x") == key
    for junk in ["", "not base64!", key_text(key)[:-4], key_text(os.urandom(16))]:
        with pytest.raises(BackupKeyError, match="not a key made by"):
            parse_key(junk, "x")


def test_key_sources_in_order(tmp_path: Path) -> None:
    first, second, third = (write_key_file(tmp_path / name) for name in ("k1", "k2", "k3"))
    (tmp_path / "creds").mkdir()
    (tmp_path / "k3").rename(tmp_path / "creds" / "backup-key")
    env = {
        "ARETE_BACKUP_KEY_FILE": str(tmp_path / "k2"),
        "ARETE_BACKUP_KEY": key_text(KEY),
        "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
    }
    assert load_key(tmp_path / "k1", env) == first
    assert load_key(None, env) == second
    del env["ARETE_BACKUP_KEY_FILE"]
    assert load_key(None, env) == KEY
    del env["ARETE_BACKUP_KEY"]
    assert load_key(None, env) == third
    with pytest.raises(BackupKeyError, match="no backup key"):
        load_key(None, {})


def test_a_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key"
    key = write_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(BackupKeyError, match="never overwritten"):
        write_key_file(path)
    assert read_key_file(path) == key
    path.chmod(0o644)
    with pytest.raises(BackupKeyError, match="readable by every user"):
        read_key_file(path)


# -- names and rotation ------------------------------------------------------------------
def test_rotation_keeps_the_newest_and_never_touches_other_files() -> None:
    names = [
        "arete-20261206T030000Z.backup",
        "arete-20261204T030000Z.backup",
        "arete-20261206T030000Z-1.backup",
        "arete-20261205T030000Z.backup",
        "notes.txt",
        ".arete-backup-x.partial",
        "arete-2026.backup",
    ]
    assert archives_to_remove(names, 2) == [
        "arete-20261204T030000Z.backup",
        "arete-20261205T030000Z.backup",
    ]
    assert archives_to_remove(names, 10) == []


def test_archive_names_are_utc_and_sort_in_time_order() -> None:
    paris = timezone(timedelta(hours=1))
    assert archive_name(datetime(2026, 12, 6, 4, 15, 2, tzinfo=paris)) == (
        "arete-20261206T031502Z.backup"
    )
    assert archive_name(datetime(2026, 12, 6, tzinfo=UTC), 2) == "arete-20261206T000000Z-2.backup"
