"""A backup of a data dir, in process (no services): what is taken, what is left out,
and that a restore gives back exactly the files, modes and database rows."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from arete_cli.backup.archive import LOCK_NAME, create_archive, list_archives
from arete_cli.backup.errors import ArchiveError, TargetError, WrongKeyError
from arete_cli.backup.restore import restore_archive, verify_archive

KEY = bytes(range(32))


def make_data_dir(root: Path) -> Path:
    data = root / "data"
    for sub in ("broker/persistence", "secrets", "maestro", "web", "agents"):
        (data / sub).mkdir(parents=True, mode=0o700)
    (data / "broker" / "passwd").write_text("a1:$7$101$hash\n")
    (data / "broker" / "passwd").chmod(0o600)
    (data / "broker" / "acl").write_text("user maestro\n")
    (data / "broker" / "broker.json").write_text("{}")
    (data / "broker" / ".run.lock").write_text("")
    (data / "broker" / "arete_clientid.so").write_bytes(b"\x7fELF")
    (data / "broker" / "persistence" / "mosquitto.db.new").write_bytes(b"half")
    (data / "secrets" / ".maestro.password.x1.tmp").write_text("half")
    (data / "secrets" / "maestro.password").write_text("s3cret\n")
    (data / "secrets" / "maestro.password").chmod(0o600)
    (data / "maestro" / ".arete-disk-reserve").write_bytes(b"\0" * 4096)
    (data / "maestro-signing.pub").write_text("pub\n")
    (data / "maestro-signing.pub").chmod(0o644)
    conn = sqlite3.connect(data / "maestro" / "main.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, action TEXT)")
    conn.executemany("INSERT INTO audit (action) VALUES (?)", [(f"a{i}",) for i in range(500)])
    conn.close()
    return data


def rows(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT id, action FROM audit ORDER BY id"))
    finally:
        conn.close()


def files(top: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(top).as_posix(): (p.stat().st_mode & 0o777, p.read_bytes())
        for p in sorted(top.rglob("*"))
        if p.is_file() and not p.name.endswith(".db")
    }


def test_restore_gives_back_the_files_modes_and_rows_and_leaves_out_the_rebuilt(
    tmp_path: Path,
) -> None:
    data = make_data_dir(tmp_path)
    # An open connection with rows only in the WAL file, as a running maestro has.
    live = sqlite3.connect(data / "maestro" / "main.db", isolation_level=None)
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.execute("INSERT INTO audit (action) VALUES ('in the wal only')")
    assert (data / "maestro" / "main.db-wal").stat().st_size > 0
    before = rows(data / "maestro" / "main.db")
    try:
        made = create_archive(data, tmp_path / "out", KEY)
    finally:
        live.close()
    taken = {entry.path for entry in made.manifest.files}
    assert "maestro/main.db" in taken
    assert "broker/passwd" in taken
    for left_out in (
        "broker/.run.lock",
        "broker/arete_clientid.so",
        "broker/persistence/mosquitto.db.new",
        "secrets/.maestro.password.x1.tmp",
        "maestro/.arete-disk-reserve",
    ):
        assert left_out not in taken
    assert not any(path.endswith(("-wal", "-shm")) for path in taken)

    target = tmp_path / "restored"
    restore_archive(made.path, target, KEY)
    assert rows(target / "maestro" / "main.db") == before
    assert before[-1] == (501, "in the wal only")
    expected = {path: value for path, value in files(data).items() if path in taken}
    assert files(target) == expected
    assert files(target)["secrets/maestro.password"][0] == 0o600
    assert files(target)["maestro-signing.pub"][0] == 0o644
    assert target.stat().st_mode & 0o777 == 0o700
    assert not list(tmp_path.glob(".restored.restore-*"))


def test_an_output_dir_inside_the_data_dir_is_left_out(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    out = data / "backups"
    first = create_archive(data, out, KEY, keep=5)
    second = create_archive(data, out, KEY, keep=5)
    assert not any(e.path.startswith("backups") for e in second.manifest.files)
    assert [item.path for item in list_archives(out)] == [first.path, second.path]
    with pytest.raises(TargetError, match="is the data dir itself"):
        create_archive(data, data, KEY)


def test_a_database_written_during_the_backup_is_a_consistent_snapshot(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    stop = threading.Event()

    def write() -> None:
        conn = sqlite3.connect(data / "maestro" / "main.db", isolation_level=None)
        while not stop.is_set():
            conn.execute("BEGIN")
            conn.execute("INSERT INTO audit (action) VALUES ('pair')")
            conn.execute("INSERT INTO audit (action) VALUES ('pair')")
            conn.execute("COMMIT")
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        made = [create_archive(data, tmp_path / "out", KEY, keep=3) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    for index, archive in enumerate(made):
        verify_archive(archive.path, KEY)
        target = tmp_path / f"r{index}"
        restore_archive(archive.path, target, KEY)
        pairs = [action for _, action in rows(target / "maestro" / "main.db") if action == "pair"]
        assert len(pairs) % 2 == 0  # never half a transaction


def test_configs_go_to_the_config_dir_only_when_asked(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    config = tmp_path / "control.toml"
    config.write_text("[web]\nport = 8081\n")
    made = create_archive(data, tmp_path / "out", KEY, configs=[config])
    skipped = restore_archive(made.path, tmp_path / "r1", KEY)
    assert skipped.configs_skipped == ["control.toml"]
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "control.toml").write_text("mine")
    with pytest.raises(TargetError, match=r"already has control\.toml"):
        restore_archive(made.path, tmp_path / "r2", KEY, config_dir=etc)
    assert not (tmp_path / "r2").exists()
    os.remove(etc / "control.toml")
    written = restore_archive(made.path, tmp_path / "r2", KEY, config_dir=etc)
    assert written.configs_written == [etc / "control.toml"]
    assert (etc / "control.toml").read_text() == config.read_text()


def test_a_failed_restore_leaves_no_directory_it_made(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    made = create_archive(data, tmp_path / "out", KEY)
    damaged = bytearray(made.path.read_bytes())
    damaged[-20] ^= 0x01
    made.path.write_bytes(bytes(damaged))
    target = tmp_path / "new-host" / "var" / "data"
    with pytest.raises(ArchiveError, match="fails authentication"):
        restore_archive(made.path, target, KEY)
    with pytest.raises(WrongKeyError):
        restore_archive(made.path, target, bytes(32))
    assert not (tmp_path / "new-host").exists()


def test_an_existing_empty_target_is_kept_and_filled_in_place(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    made = create_archive(data, tmp_path / "out", KEY)
    target = tmp_path / "mounted"
    target.mkdir(mode=0o750)
    target.chmod(0o750)  # as a deployment (or a mount point) made it
    inode = target.stat().st_ino
    with pytest.raises(WrongKeyError):
        restore_archive(made.path, target, bytes(32))
    assert list(target.iterdir()) == []
    restore_archive(made.path, target, KEY)
    assert target.stat().st_ino == inode
    assert target.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in target.iterdir()) == sorted(
        p.name for p in data.iterdir() if p.name != "out"
    )


def test_leftovers_of_a_killed_backup_are_removed_and_two_at_once_are_refused(
    tmp_path: Path,
) -> None:
    data = make_data_dir(tmp_path)
    out = tmp_path / "out"
    create_archive(data, out, KEY)
    # What a backup killed mid-way leaves: plaintext database copies, a partial archive.
    stale = out / ".arete-backup-staging-x1"
    stale.mkdir()
    (stale / "snapshot-1.db").write_bytes(b"SQLite format 3\0 plaintext rows")
    (out / ".arete-backup-y2.partial").write_bytes(b"ARETEBK")
    (out / "notes.txt").write_text("mine\n")
    create_archive(data, out, KEY)
    names = sorted(p.name for p in out.iterdir())
    assert not any(name.startswith(".arete-backup-") for name in names), names
    assert "notes.txt" in names
    with (out / LOCK_NAME).open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(TargetError, match="another 'arete backup create'"):
            create_archive(data, out, KEY)
