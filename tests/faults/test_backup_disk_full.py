"""A full disk under ``arete backup``: a backup that cannot be written fails with one line
and leaves no partial file, and the archives made before are kept, intact; a restore
onto a full disk fails the same way and leaves the target as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from arete_cli.backup.archive import LOCK_NAME
from arete_cli.backup.keys import write_key_file
from tests.faults.conftest import Reliability
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.faults import SmallDisk
from web_api.auth.users import UserStore


def backup(data_dir: Path, out: Path, key: Path) -> tuple[int, str, str]:
    done = run_cli(
        "backup", "create", "--data-dir", str(data_dir), "--out", str(out), "--keep", "1",
        "--key-file", str(key), check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_backup_and_restore_on_a_full_disk_fail_cleanly_and_keep_the_old_archives(
    broker: Broker,
    small_disk: Callable[..., SmallDisk],
    reliability: Reliability,
    tmp_path: Path,
) -> None:
    key = tmp_path / "backup.key"
    write_key_file(key)
    broker.add_agent("a1")
    store = UserStore(broker.data_dir / "web" / "users.db")
    store.add_user("admin", "admin", "a long enough password")
    store.close()
    disk = small_disk("4m", name="backups")
    out = disk.path / "arete"

    code, stdout, stderr = backup(broker.data_dir, out, key)
    assert code == 0, stderr
    first = Path(stdout.split()[1])
    kept = first.read_bytes()

    disk.fill(leave=4096)
    code, stdout, stderr = backup(broker.data_dir, out, key)
    assert code == 2, stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "No space left" in lines[0] or "full" in lines[0], lines[0]
    # No partial archive, no staging dir; the archive before is there, byte for byte
    # (--keep 1 removes it only once a new one is complete).
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, LOCK_NAME])
    assert first.read_bytes() == kept

    # Restore onto a full disk: one line, and nothing left beside the target.
    disk.free()
    target_disk = small_disk("1m", name="restore")
    target_disk.fill(leave=8192)
    before = sorted(p.name for p in target_disk.path.iterdir())
    done = run_cli(
        "backup", "restore", str(first), "--data-dir", str(target_disk.path / "data"),
        "--key-file", str(key), check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "cannot unpack into" in done.stderr, done.stderr
    assert "No space left on device" in done.stderr, done.stderr
    assert sorted(p.name for p in target_disk.path.iterdir()) == before

    # Room again: the next backup works and replaces the old one.
    code, stdout, stderr = backup(broker.data_dir, out, key)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [Path(stdout.split()[1]).name, LOCK_NAME]
    )
    run_cli("backup", "verify", stdout.split()[1], "--key-file", str(key))
    reliability.record(
        "backup --out disk full, then restore onto a full disk",
        lost=0,
        notes="one error line each, no partial archive, the previous archive kept intact; "
        "the next backup once there is room",
    )
