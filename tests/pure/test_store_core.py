"""Opening, migrating and closing the store; its settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pydantic
import pytest

from maestro.errors import StoreError
from maestro.store.core import Store
from maestro.store.rows import FIELDS
from maestro.store.settings import StoreSettings

T0 = 1_700_000_000.0
COMMANDS = ["CREATE TABLE commands (id TEXT PRIMARY KEY, name TEXT NOT NULL);"]


def open_files(path: Path) -> list[str]:
    """Descriptors of this process open on ``path`` or its -wal/-shm files."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def versions(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return dict(conn.execute("SELECT component, version FROM schema_versions"))


def test_reopening_keeps_data_and_runs_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with Store.open(path, {"commands": COMMANDS}) as store:
        store.submit_write(
            lambda c: c.execute("INSERT INTO commands VALUES ('c1', 'reboot')")
        ).result(5)
    first = versions(path)
    assert first == {
        "agents": 1,
        "samples": 2,
        "registry": 1,
        "audit": 1,
        "detail": 2,
        "commands": 1,
    }
    # A second open would fail on CREATE TABLE if the migration ran again.
    with Store.open(path, {"commands": COMMANDS}) as store:
        rows = store.read_now(lambda c: c.execute("SELECT id FROM commands").fetchall())
    assert rows == [("c1",)]
    assert versions(path) == first


def test_a_new_migration_of_a_component_upgrades_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    Store.open(path, {"commands": COMMANDS}).close()
    upgraded = [*COMMANDS, "ALTER TABLE commands ADD COLUMN state TEXT;"]
    with Store.open(path, {"commands": upgraded}) as store:
        store.submit_write(
            lambda c: c.execute("INSERT INTO commands VALUES ('c1', 'reboot', 'ok')")
        ).result(5)
    assert versions(path)["commands"] == 2


def test_a_file_from_a_newer_build_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    Store.open(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE schema_versions SET version = 9 WHERE component = 'samples'")
    with pytest.raises(StoreError, match=r"'samples' tables are at version 9, newer than"):
        Store.open(path)
    assert open_files(path) == []


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path.name)):
        Store.open(path)


def test_another_component_cannot_take_over_a_store_table_set(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="belongs to the store"):
        Store.open(tmp_path / "m.db", {"samples": ["CREATE TABLE x (y);"]})


def test_close_leaves_no_file_open_and_no_thread_running(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    threads_before = threading.active_count()
    store = Store.open(path)
    done = threading.Event()
    store.submit_samples([("a1", 1, T0, 1, *([1.0] * len(FIELDS)))], done.set)
    assert done.wait(5)
    for _ in range(8):  # wake every reader so each opens its connection
        store.read_now(lambda c: c.execute("SELECT count(*) FROM samples").fetchone())
    assert open_files(path)
    store.close()
    store.close()  # twice is fine
    assert open_files(path) == []
    assert threading.active_count() == threads_before
    assert not (tmp_path / "m.db-wal").exists(), "the last connection folds the WAL in"
    with pytest.raises(StoreError, match="closed"):
        store.read_now(lambda c: None)
    with pytest.raises(StoreError, match="closed"):
        store.submit_write(lambda c: None)


def test_async_reads_and_writes_do_not_block_the_event_loop(tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        store = await asyncio.to_thread(Store.open, tmp_path / "m.db")
        release = threading.Event()
        slow = asyncio.ensure_future(store.write(lambda c: release.wait(5)))
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.2:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        release.set()
        await slow
        count = await store.read(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()[0])
        await store.aclose()
        return ticks, int(count)

    ticks, count = asyncio.run(main())
    assert ticks >= 10
    assert count == 0


def test_a_read_that_fails_comes_back_as_a_store_error(tmp_path: Path) -> None:
    with Store.open(tmp_path / "m.db") as store:
        with pytest.raises(StoreError, match="no_such_table"):
            store.read_now(lambda c: c.execute("SELECT * FROM no_such_table"))
        with pytest.raises(StoreError, match=r"readonly|read-only"):
            store.read_now(lambda c: c.execute("INSERT INTO agents (name) VALUES ('x')"))


def test_old_raw_samples_are_pruned_by_the_writer_on_its_own(tmp_path: Path) -> None:
    now = T0 + 10 * 3600
    settings = StoreSettings(raw_retention_h=1, retention_every_s=1, batch_max_delay_s=0.01)
    with Store.open(tmp_path / "m.db", settings=settings, clock=lambda: now) as store:
        store.submit_samples(
            [("a1", seq, T0 + seq, 1, *([1.0] * len(FIELDS))) for seq in range(100)]
            + [("a1", 1000, now - 60, 1, *([1.0] * len(FIELDS)))]
        )
        deadline = time.monotonic() + 5
        remaining = -1
        while time.monotonic() < deadline:
            remaining = store.read_now(
                lambda c: c.execute("SELECT count(*) FROM samples").fetchone()[0]
            )
            if remaining == 1:
                break
            time.sleep(0.05)
        assert remaining == 1
        assert store.writer.retention_deleted == 100


@pytest.mark.parametrize(
    "bad",
    [
        {"raw_retention_h": 0},
        {"rollup_retention_d": -1},
        {"batch_max_rows": 0},
        {"batch_max_delay_s": -0.1},
        {"retention_every_s": 0},
        {"raw_retention_hours": 4},
    ],
)
def test_bad_store_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        StoreSettings.model_validate(bad)


def test_store_settings_defaults_match_the_issue() -> None:
    settings = StoreSettings()
    assert settings.raw_retention_s == 48 * 3600
    assert settings.rollup_retention_s == 30 * 86_400
    assert (settings.batch_max_rows, settings.batch_max_delay_s) == (5000, 0.05)
