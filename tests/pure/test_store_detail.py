"""Per-core, per-mount, per-sensor and per-GPU history: stored with each sample, rolled up
per minute, pruned like the samples, read back from every replica's file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from arete.payloads import Gpu, Mount, Sample
from maestro.errors import QueryError
from maestro.store import detail_rollup, rollup
from maestro.store.core import BUILTIN_MIGRATIONS, Store
from maestro.store.db import connect, migrate
from maestro.store.detail import DetailStager
from maestro.store.packing import aggregate_rollups, merge_into, pack_rollup, unpack_rollup
from maestro.store.query import History, query_history
from maestro.store.replicas import attach_siblings
from maestro.store.rollup import apply_retention
from maestro.store.rows import detail_items, detail_numbers, to_row
from maestro.store.samples import AgentIds, store_batch
from maestro.store.settings import StoreSettings

T0 = 1_700_000_040.0  # a minute boundary
NOW = T0 + 3600


def sample(seq: int, ts: float, core0: float, *, temp: float = 50.0, gpu: bool = False) -> Sample:
    return Sample(
        ts=ts,
        seq=seq,
        cpu=core0 / 2,
        cpus=[core0, 100.0 - core0],
        mem=40.0,
        mounts=[Mount("/", 1000, 400, 40.0), Mount("/data", 2000, 1800, 90.0)],
        temps={"nvme": temp},
        gpu=[Gpu(0, "g", util=core0, mem_used=1, mem_total=4, temp=61.0, power_w=120.5)]
        if gpu
        else None,
        uptime_s=3600.0 + seq,
        procs=200 + seq,
        swap=12.5,
    )


def put(
    conn: sqlite3.Connection,
    stager: DetailStager,
    agent: str,
    samples: Sequence[Sample],
    ids: AgentIds | None = None,
) -> int:
    """Store ``samples`` of ``agent`` as the writer does: held, staged, released."""
    stager.hold(agent, samples)
    conn.execute("BEGIN")
    inserted = store_batch(
        conn, ids or AgentIds(conn), [to_row(agent, 1, s) for s in samples], [stager]
    )
    conn.execute("COMMIT")
    stager.release(agent, [s.seq for s in samples])
    return inserted


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for component, scripts in BUILTIN_MIGRATIONS.items():
        migrate(conn, component, scripts)
    try:
        yield conn
    finally:
        conn.close()


def ask(
    conn: sqlite3.Connection, fields: list[str], start: float, end: float, step: float, **kw: object
) -> History:
    return query_history(conn, "a1", fields, start=start, end=end, step=step, now=NOW, **kw)  # type: ignore[arg-type]


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def test_every_family_the_agent_sends_comes_back_from_raw_history(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    put(db, stager, "a1", [sample(i, T0 + i, 10.0 * i, gpu=True) for i in range(4)])
    h = ask(
        db,
        ["cpu.*", "mount:*", "mount_used:/data", "temp:*", "gpu.*", "uptime_s", "swap", "procs"],
        T0,
        T0 + 4,
        1,
    )
    assert h.source == "raw"
    assert h.ts == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert h.series["cpu.0"]["avg"] == [0.0, 10.0, 20.0, 30.0]
    assert h.series["cpu.1"]["avg"] == [100.0, 90.0, 80.0, 70.0]
    assert h.series["mount:/"]["avg"] == [40.0] * 4
    assert h.series["mount:/data"]["max"] == [90.0] * 4
    assert h.series["mount_used:/data"]["avg"] == [1800.0] * 4
    assert h.series["temp:nvme"]["avg"] == [50.0] * 4
    assert h.series["gpu.0.util"]["avg"] == [0.0, 10.0, 20.0, 30.0]
    assert h.series["gpu.0.mem"]["avg"] == [25.0] * 4
    assert h.series["gpu.0.power"]["avg"] == [120.5] * 4
    assert h.series["uptime_s"]["avg"] == [3600.0, 3601.0, 3602.0, 3603.0]
    assert h.series["swap"]["avg"] == [12.5] * 4
    assert h.series["procs"]["avg"] == [200.0, 201.0, 202.0, 203.0]
    assert list(h.series)[:2] == ["cpu.0", "cpu.1"], "a pattern gives one series per key"


def test_everything_at_once_with_a_star_and_cores_in_natural_order(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    many = Sample(ts=T0, seq=1, cpu=5.0, cpus=[float(i) for i in range(12)], mem=1.0)
    put(db, stager, "a1", [many])
    h = ask(db, ["*"], T0, T0 + 10, 5)
    assert {"cpu", "temp_max"} <= set(h.series)
    cores = [name for name in h.series if name.startswith("cpu.")]
    assert cores == [f"cpu.{i}" for i in range(12)]
    assert h.series["cpu.11"]["avg"] == [11.0]


def test_a_redelivered_sample_adds_no_second_detail_row(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    ids = AgentIds(db)
    batch = [sample(1, T0 + 1, 10.0), sample(2, T0 + 2, 20.0)]
    assert put(db, stager, "a1", batch, ids) == 2
    assert put(db, stager, "a1", [*batch, sample(3, T0 + 3, 30.0)], ids) == 1
    assert count(db, "detail") == 3
    assert stager.held == 0, "released once stored"
    assert ask(db, ["cpu.0"], T0, T0 + 10, 10).series["cpu.0"]["avg"] == [20.0]


def test_rows_without_held_samples_store_no_detail_and_no_error(db: sqlite3.Connection) -> None:
    db.execute("BEGIN")
    store_batch(db, AgentIds(db), [to_row("a1", 1, sample(1, T0, 5.0))], [DetailStager()])
    db.execute("COMMIT")
    assert count(db, "samples") == 1
    assert count(db, "detail") == 0


def test_a_key_id_made_in_a_rolled_back_batch_is_never_reused_for_another_key(
    db: sqlite3.Connection,
) -> None:
    stager = DetailStager()
    ids = AgentIds(db)
    stager.hold("a1", [sample(1, T0, 5.0)])
    db.execute("BEGIN")
    store_batch(db, ids, [to_row("a1", 1, sample(1, T0, 5.0))], [stager])
    db.execute("ROLLBACK")
    ids.rollback()
    other = Sample(ts=T0 + 1, seq=2, cpu=1.0, mem=1.0, temps={"gpu-hot": 77.0})
    put(db, stager, "a1", [other], ids)
    put(db, stager, "a1", [sample(1, T0, 5.0)], ids)
    h = ask(db, ["temp:*", "cpu.0"], T0, T0 + 10, 10)
    assert h.series["temp:gpu-hot"]["avg"] == [77.0]
    assert h.series["temp:nvme"]["avg"] == [50.0]
    assert h.series["cpu.0"]["avg"] == [5.0]


def test_minute_rollups_keep_min_avg_max_and_merge_a_late_sample(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    put(db, stager, "a1", [sample(i, T0 + i, float(i)) for i in range(60)])  # 0..59 in one minute
    before = ask(db, ["cpu.0"], T0, T0 + 120, 60)
    assert before.source == "rollup"
    assert count(db, "detail_1m") == 0, "not folded yet: the query reads the raw tail"
    assert list(detail_rollup.fold_steps(db, NOW)) == [0]
    assert count(db, "detail_1m") == 1
    after = ask(db, ["cpu.0"], T0, T0 + 120, 60)
    assert after.series == before.series
    assert after.series["cpu.0"] == {"min": [0.0], "avg": [29.5], "max": [59.0]}
    put(db, stager, "a1", [sample(100, T0 + 30.5, 200.0 - 100.0)])  # a replayed sample, late
    late = ask(db, ["cpu.0"], T0, T0 + 120, 60)
    list(detail_rollup.fold_steps(db, NOW))
    assert ask(db, ["cpu.0"], T0, T0 + 120, 60).series == late.series
    assert late.series["cpu.0"]["max"] == [100.0]
    assert late.series["cpu.0"]["avg"] == [pytest.approx((sum(range(60)) + 100) / 61)]
    assert count(db, "detail_1m") == 1, "merged into its minute"


def test_a_long_window_reads_rollups_in_whole_minutes(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    put(db, stager, "a1", [sample(i, T0 + i * 30, 10.0) for i in range(4 * 120)])
    h = ask(db, ["temp:nvme"], T0, T0 + 8 * 3600, 30)
    assert h.source == "rollup", "per-item readings over 6 h come from the rollups"
    assert h.step == 60
    assert len(h.ts) == 240
    assert set(h.series["temp:nvme"]["avg"]) == {50.0}


def test_retention_folds_first_then_prunes_raw_rows_and_old_rollups(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    now = T0 + 3 * 86_400
    old = [sample(i, now - 2 * 86_400 + i, 30.0) for i in range(10)]
    recent = [sample(100 + i, now - 7200 + i, 70.0) for i in range(10)]
    fresh = [sample(200 + i, now - 60 + i, 90.0) for i in range(10)]
    put(db, stager, "a1", old + recent + fresh)
    apply_retention(db, now, StoreSettings(raw_retention_h=1, rollup_retention_d=1))
    assert count(db, "detail") == 10, "only the last hour stays raw"
    minutes = [m for (m,) in db.execute("SELECT minute FROM detail_1m ORDER BY minute")]
    assert minutes == [int((now - 7200) // 60) * 60, int((now - 60) // 60) * 60]
    h = query_history(db, "a1", ["cpu.0"], start=now - 3 * 3600, end=now, step=60, now=now)
    assert [v for v in h.series["cpu.0"]["avg"] if v is not None] == [70.0, 90.0]


def test_retention_never_prunes_a_raw_row_before_it_is_folded(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    now = T0 + 86_400
    put(db, stager, "a1", [sample(1, now - 7200, 33.0)])
    steps = rollup.retention_steps(db, now, StoreSettings(raw_retention_h=1, rollup_retention_d=2))
    for _ in steps:
        pass
    assert count(db, "detail") == 0
    h = query_history(db, "a1", ["cpu.0"], start=now - 3 * 3600, end=now, step=60, now=now)
    assert [v for v in h.series["cpu.0"]["avg"] if v is not None] == [33.0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["cpu.x"], "unknown field.*'cpu.x'.*cpu.<core>"),
        (["disk:*"], "unknown field"),
        (["gpu.0.fan"], "unknown field"),
        (["cpu.*; DROP TABLE detail"], "unknown field"),
    ],
)
def test_bad_detail_names_are_refused_with_the_known_ones(
    db: sqlite3.Connection, fields: list[str], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        ask(db, fields, T0, T0 + 60, 10)


def test_a_detail_key_never_seen_gives_an_empty_series_not_an_error(db: sqlite3.Connection) -> None:
    put(db, DetailStager(), "a1", [sample(1, T0, 5.0)])
    h = ask(db, ["cpu", "gpu.0.util", "gpu.*"], T0, T0 + 10, 10)
    assert h.series == {
        "cpu": {"min": [2.5], "avg": [2.5], "max": [2.5]},
        "gpu.0.util": {"min": [None], "avg": [None], "max": [None]},
    }


def test_the_minute_is_the_same_for_samples_and_detail() -> None:
    assert detail_rollup.MINUTE == rollup.MINUTE


@pytest.mark.parametrize(
    "one",
    [
        sample(1, T0, 5.0, gpu=True),
        sample(2, T0, 5.0),
        Sample(ts=T0, seq=3, cpu=1.0, mem=1.0),
        Sample(
            ts=T0, seq=4, cpu=1.0, mem=1.0, load=(1.0, 2.0, 3.0), mem_used=1, mem_total=2,
            gpu=[Gpu(1, "g"), Gpu(2, "h", temp=40.0), Gpu(3, "i", mem_used=1, mem_total=0)],
        ),
    ],
)  # fmt: skip
def test_the_packed_values_follow_the_named_keys_in_order(one: Sample) -> None:
    assert detail_numbers(one) == [value for _, value in detail_items(one)]


def test_rollup_rows_aggregate_like_their_merge() -> None:
    one = {1: [2.0, 1.0, 3.0, 2.0], 2: [1.0, 5.0, 5.0, 5.0]}
    two = {1: [3.0, 0.5, 6.0, 4.0], 2: [2.0, 1.0, 7.0, 6.0]}
    other_keys = {3: [1.0, 9.0, 9.0, 9.0], 1: [1.0, 10.0, 10.0, 10.0]}
    merged = unpack_rollup(pack_rollup(one))
    for more in (two, other_keys):
        merge_into(merged, unpack_rollup(pack_rollup(more)))
    together = aggregate_rollups([pack_rollup(r) for r in (one, two, other_keys)])
    assert together == merged
    assert together[1] == [6.0, 0.5, 19.0, 10.0]


def test_a_sample_with_other_keys_is_packed_with_its_own_key_ids(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    ids = AgentIds(db)
    put(db, stager, "a1", [sample(1, T0, 5.0)], ids)
    put(db, stager, "a1", [sample(2, T0 + 1, 6.0, gpu=True)], ids)  # a GPU appears
    put(db, stager, "a1", [sample(3, T0 + 2, 7.0)], ids)
    h = ask(db, ["cpu.0", "gpu.0.util"], T0, T0 + 3, 1)
    assert h.series["cpu.0"]["avg"] == [5.0, 6.0, 7.0]
    assert h.series["gpu.0.util"]["avg"] == [None, 6.0, None]


def test_only_minutes_that_are_over_are_folded(db: sqlite3.Connection) -> None:
    stager = DetailStager()
    put(db, stager, "a1", [sample(i, T0 + i * 20, 1.0) for i in range(6)])  # minutes T0, +60
    list(detail_rollup.fold_steps(db, T0 + 70))
    assert [m for (m,) in db.execute("SELECT minute FROM detail_1m")] == [int(T0)]
    assert [m for (m,) in db.execute("SELECT minute FROM detail_dirty")] == [int(T0) + 60]
    h = ask(db, ["cpu.0"], T0, T0 + 120, 60)
    assert h.series["cpu.0"]["avg"] == [1.0, 1.0]


# -- replicas: two real files ------------------------------------------------------------
def wait_stored(store: Store) -> None:
    deadline = time.monotonic() + 10
    held = store.details.held if store.details else 0
    while (store.writer.pending_rows or held) and time.monotonic() < deadline:
        time.sleep(0.01)
        held = store.details.held if store.details else 0


def submit(store: Store, agent: str, samples: Sequence[Sample]) -> None:
    """As the ingest does: the samples held for the stager until stored."""
    details = store.details
    if details is not None:
        details.hold(agent, samples)
    seqs = [s.seq for s in samples]

    def on_stored() -> None:
        if details is not None:
            details.release(agent, seqs)

    store.submit_samples([to_row(agent, 1, s) for s in samples], on_stored)


def test_detail_off_stores_the_samples_without_their_detail(tmp_path: Path) -> None:
    settings = StoreSettings(batch_max_delay_s=0.01, detail=False)
    with Store.open(tmp_path / "m.db", settings=settings, clock=lambda: NOW) as store:
        assert store.details is None
        submit(store, "a1", [sample(1, T0, 5.0)])
        wait_stored(store)
        h = asyncio.run(store.history("a1", ["cpu", "cpu.0"], T0, T0 + 10, 10))
    assert h.series["cpu"]["avg"] == [2.5]
    assert h.series["cpu.0"]["avg"] == [None]


def test_history_from_either_replica_shows_the_whole_series(tmp_path: Path) -> None:
    settings = StoreSettings(batch_max_delay_s=0.01)
    folder = tmp_path / "maestro"
    with (
        Store.open(folder / "a.db", settings=settings, clock=lambda: NOW) as a,
        Store.open(folder / "b.db", settings=settings, clock=lambda: NOW) as b,
    ):
        # Shared subscriptions: each replica stored every other message of the agent.
        for i in range(20):
            submit(a if i % 2 else b, "a1", [sample(i, T0 + i, float(i))])
        wait_stored(a)
        wait_stored(b)

        async def both() -> list[History]:
            return [
                await store.history("a1", ["cpu", "cpu.0", "mount:/"], T0, T0 + 20, 10)
                for store in (a, b)
            ]

        from_a, from_b = asyncio.run(both())
        hourly = asyncio.run(a.history("a1", ["cpu.0"], T0, T0 + 3600, 60))
    assert from_a.series == from_b.series
    assert from_a.series["cpu.0"] == {
        "min": [0.0, 10.0],
        "avg": [4.5, 14.5],
        "max": [9.0, 19.0],
    }
    assert from_a.series["cpu"]["avg"] == [2.25, 7.25]
    assert hourly.series["cpu.0"]["avg"] == [9.5], "rollups (and unfolded rows) of both files"


def test_a_sibling_file_without_tables_or_not_a_database_is_skipped(tmp_path: Path) -> None:
    own = tmp_path / "main.db"
    conn = connect(own)
    for component, scripts in BUILTIN_MIGRATIONS.items():
        migrate(conn, component, scripts)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    connect(tmp_path / "empty.db").close()
    reader = connect(own, readonly=True)
    try:
        assert attach_siblings(reader, own) == ["main"]
        sibling = connect(tmp_path / "b.db")
        for component, scripts in BUILTIN_MIGRATIONS.items():
            migrate(sibling, component, scripts)
        sibling.close()
        assert attach_siblings(reader, own) == ["main", "replica_0"]
        assert attach_siblings(reader, own) == ["main", "replica_0"], "attached once"
        (tmp_path / "b.db").unlink()
        assert attach_siblings(reader, own) == ["main"], "a file that is gone is detached"
    finally:
        reader.close()
        conn.close()


def test_an_existing_store_without_detail_tables_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    for component, scripts in BUILTIN_MIGRATIONS.items():
        if component != "detail":
            migrate(conn, component, scripts)
    conn.execute("BEGIN")
    store_batch(conn, AgentIds(conn), [to_row("a1", 1, sample(1, T0, 5.0))])
    conn.execute("COMMIT")
    conn.close()
    with Store.open(path, clock=lambda: NOW) as store:
        submit(store, "a1", [sample(2, T0 + 1, 7.0)])
        wait_stored(store)
        h = asyncio.run(store.history("a1", ["cpu", "cpu.0"], T0, T0 + 10, 10))
    assert h.series["cpu"]["avg"] == [pytest.approx(3.0)]
    assert h.series["cpu.0"]["avg"] == [7.0], "the old sample has no detail; the new one has"
