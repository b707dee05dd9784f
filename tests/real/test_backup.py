"""``arete backup``: an archive made while the fleet runs and samples flow brings the same
fleet back on a fresh data dir — the agents' own credentials, users and tokens, metric
history and audit log — and a wrong key or a damaged archive changes nothing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arete_cli.backup.archive import LOCK_NAME
from arete_cli.backup.keys import write_key_file
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.procs import REPO, Proc, free_port, wait_for
from web_api.auth.users import UserStore

ADMIN_PASSWORD = "restore me, please, 2026"
FAST = {
    "ARETE_MAESTRO_LIVENESS__TICK_S": "0.2",
    "ARETE_MAESTRO_LIVENESS__DIGEST_S": "0.5",
    "ARETE_MAESTRO_LOG_FORMAT": "json",
}


@dataclass
class Web:
    proc: Proc
    url: str

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def start_web(procs: Callable[..., Proc]) -> Callable[[Path], Web]:
    def start(data_dir: Path) -> Web:
        port = free_port()
        argv = [sys.executable, "-m", "arete_cli", "web", "run", "--data-dir", str(data_dir)]
        proc = procs([*argv, "--port", str(port)], f"web-{port}", env=FAST)
        web = Web(proc, f"http://127.0.0.1:{port}")

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"arete web run exited:\n{proc.output()}")
            try:
                return httpx.get(f"{web.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "the web API to be ready", step=0.2)
        return web

    return start


@pytest.fixture
def backup_key(tmp_path: Path) -> Path:
    path = tmp_path / "backup.key"
    run_cli("backup", "key", "--out", str(path))
    return path


def online(client: httpx.Client, agent_id: str) -> bool:
    answer = client.get(f"/agents/{agent_id}")
    return answer.status_code == 200 and answer.json()["state"] == "online"


def history(client: httpx.Client, agent_id: str, start: float, end: float) -> list[float]:
    answer = client.get(
        f"/agents/{agent_id}/metrics", params={"from": start, "to": end, "step": 1, "fields": "cpu"}
    )
    assert answer.status_code == 200, answer.text
    return [
        ts
        for ts, cpu in zip(answer.json()["ts"], answer.json()["series"]["cpu"]["avg"], strict=True)
        if cpu is not None
    ]


def test_a_backup_made_under_load_restores_the_same_fleet(
    *,
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    start_web: Callable[[Path], Web],
    procs: Callable[..., Proc],
    backup_key: Path,
    tmp_path: Path,
) -> None:
    data_dir = broker.data_dir
    # Agents added after this require commands signed with the maestro's key.
    run_cli("keys", "create", "--data-dir", str(data_dir))
    store = UserStore(data_dir / "web" / "users.db")
    store.add_user("admin", "admin", ADMIN_PASSWORD)
    token = store.create_token("admin", "before the backup")
    store.close()
    config = tmp_path / "control.toml"
    config.write_text('data_dir = "/var/lib/arete"\n[web]\nport = 8081\n')
    config.chmod(0o640)

    web = start_web(data_dir)
    agents = [start_agent("a1"), start_agent("a2")]
    load = procs(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            *("--port", str(broker.port), "--root", broker.root),
            *("--password-file", str(data_dir / "secrets" / "maestro.password")),
            *("--agents", "100", "--duration", "60", "--workers", "1", "--start-delay", "0"),
        ],
        "loadgen",
    )
    api = web.client(token)
    wait_for(lambda: online(api, "a1") and online(api, "a2"), 30, "a1 and a2 online", step=0.5)
    # Something for the audit log, through the API as a person would.
    with web.client() as browser:
        signed_in = browser.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
    command = api.post("/agents/a1/command?wait=true", json={"name": "metrics", "timeout": 10})
    assert command.status_code == 200, command.text
    assert command.json()["state"] == "ok", command.text
    t0 = time.time() - 300
    # Polled twice a second: the API limits a user to 20 requests a second.
    wait_for(
        lambda: len(history(api, "a1", t0, time.time())) >= 4, 30, "stored samples of a1", step=0.5
    )
    fleet = [agent["id"] for agent in api.get("/agents").json()]
    assert len([name for name in fleet if name.startswith("lg")]) >= 50, "no load: " + str(fleet)
    audit_before = api.get("/audit").json()
    assert {"auth.login"} <= {entry["action"] for entry in audit_before}
    history_before = history(api, "a1", t0, time.time())

    made = run_cli(
        "backup", "create", "--data-dir", str(data_dir), "--out", str(tmp_path / "backups"),
        "--key-file", str(backup_key), "--config", str(config),
    )  # fmt: skip
    samples_while = history(api, "a1", t0, time.time())
    assert len(samples_while) > len(history_before), "samples were not flowing during the backup"
    assert load.alive(), f"the load generator stopped early:\n{load.output()}"
    assert made.stdout.startswith("wrote "), made.stdout
    archive = Path(made.stdout.split()[1])
    assert archive.stat().st_mode & 0o777 == 0o600

    # The whole control plane goes away (the agents' hosts keep their configs).
    load.stop()
    for agent in agents:
        agent.proc.stop()
    web.proc.stop()
    api.close()
    broker.stop()

    restored = tmp_path / "fresh-host" / "data"
    done = run_cli(
        "backup", "restore", str(archive), "--data-dir", str(restored),
        "--key-file", str(backup_key), "--config-dir", str(tmp_path / "fresh-host" / "etc"),
    )  # fmt: skip
    assert f"into {restored}" in done.stdout
    assert (tmp_path / "fresh-host" / "etc" / "control.toml").read_bytes() == config.read_bytes()
    assert (tmp_path / "fresh-host" / "etc" / "control.toml").stat().st_mode & 0o777 == 0o640

    new_broker = Broker(restored, broker.port, broker.root, procs)
    new_broker.start()
    try:
        new_web = start_web(restored)
        # Same agent config (same password) as before the disaster.
        restarted_at = time.time()
        start_agent("a1", config=broker.agent_config("a1"), state_dir=agents[0].state_dir)
        assert new_broker.accepts("a2", broker.password_of("a2"))
        with new_web.client(token) as api:  # the API token from before the backup
            wait_for(lambda: online(api, "a1"), 30, "a1 online on the restored fleet")
            # Online alone may be the retained status restored with the broker: wait for
            # the restarted agent's own samples before commanding it.
            wait_for(
                lambda: len(history(api, "a1", restarted_at, time.time())) >= 1,
                60,
                "samples of the restarted a1 on the restored fleet",
            )
            assert api.get("/agents/a2").status_code == 200  # the registry came back
            # The restored signing key: the agent, configured before, accepts its commands.
            signed = api.post(
                "/agents/a1/command?wait=true", json={"name": "metrics", "timeout": 30}
            )
            assert signed.status_code == 200, signed.text
            assert signed.json()["state"] == "ok", signed.text
            assert api.get(f"/commands/{command.json()['id']}").json()["state"] == "ok"
            after = history(api, "a1", t0, history_before[-1] + 0.5)
            assert set(history_before) <= set(after), "history from before the backup is lost"
            audit_after = {entry["id"]: entry for entry in api.get("/audit?limit=1000").json()}
            for entry in audit_before:
                assert audit_after.get(entry["id"]) == entry
        with new_web.client() as browser:
            signed_in = browser.post(
                "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            assert browser.get("/agents").status_code == 200
    finally:
        new_broker.stop()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A data dir (a signing key, a users database), its backup key and one archive of it,
    made once for the tests below: (data dir, key, archive)."""
    top = tmp_path_factory.mktemp("made")
    data_dir = top / "data"
    run_cli("keys", "create", "--data-dir", str(data_dir))
    store = UserStore(data_dir / "web" / "users.db")
    store.add_user("admin", "admin", ADMIN_PASSWORD)
    store.close()
    key = top / "backup.key"
    write_key_file(key)
    done = run_cli(
        "backup", "create", "--data-dir", str(data_dir), "--out", str(top / "out"),
        "--key-file", str(key),
    )  # fmt: skip
    return data_dir, key, Path(done.stdout.split()[1])


@pytest.fixture
def archive(made: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    """A copy of the module's archive, this test's to damage."""
    copy = tmp_path / made[2].name
    copy.write_bytes(made[2].read_bytes())
    return copy


@pytest.fixture
def key(made: tuple[Path, Path, Path]) -> Path:
    return made[1]


def refused_restore(archive: Path, target: Path, key: Path) -> str:
    """Restore must fail with one line on stderr and exit code 2; that line."""
    done = run_cli(
        "backup", "restore", str(archive), "--data-dir", str(target), "--key-file", str(key),
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    parent = tmp_path / "host"
    parent.mkdir()
    (parent / "unrelated.txt").write_text("stays\n")
    empty = parent / "data"
    empty.mkdir()
    yield empty
    # Whatever failed, nothing new appeared beside the target (no half-restored dir).
    assert tree(parent) == ["data", "unrelated.txt"]


def test_a_wrong_key_is_one_line_and_changes_nothing(
    archive: Path, target: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    write_key_file(other)
    line = refused_restore(archive, target, other)
    assert "wrong backup key" in line
    assert tree(target) == []


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "cut to the header"])
def test_a_damaged_archive_is_one_line_and_changes_nothing(
    archive: Path, target: Path, key: Path, damage: str
) -> None:
    data = bytearray(archive.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncated":
        data = data[: len(data) - 100]
    else:
        data = data[:37]
    archive.write_bytes(bytes(data))
    line = refused_restore(archive, target, key)
    assert "damaged" in line or "truncated" in line, line
    assert tree(target) == []


def test_a_non_empty_data_dir_is_refused(archive: Path, target: Path, key: Path) -> None:
    (target / "keep.me").write_text("mine\n")
    line = refused_restore(archive, target, key)
    assert "is not empty" in line
    (target / "keep.me").unlink()


def test_rotation_keeps_the_newest_n_and_list_shows_them(
    made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data_dir, key, _ = made
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not an archive\n")
    archives = []
    for _ in range(3):
        done = run_cli(
            "backup", "create", "--data-dir", str(data_dir), "--out", str(out),
            "--keep", "2", "--key-file", str(key),
        )  # fmt: skip
        archives.append(Path(done.stdout.split()[1]))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [archives[1].name, archives[2].name, "notes.txt", LOCK_NAME]
    )
    listed = run_cli("backup", "list", "--out", str(out)).stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == [archives[1].name, archives[2].name]
    verified = run_cli("backup", "verify", str(archives[2]), "--key-file", str(key))
    assert ": ok, made " in verified.stdout
    assert "web/users.db\tsqlite" in verified.stdout


def test_a_read_only_data_dir_is_backed_up_with_the_maestro_running_or_stopped(
    tmp_path: Path,
) -> None:
    """The backup unit sees the data dir read-only (ReadOnlyPaths=): a WAL database is
    backed up whether a writer has it open (its -shm exists) or not (no -shm can be made)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    data_dir = tmp_path / "data"
    run_cli("keys", "create", "--data-dir", str(data_dir))
    (data_dir / "maestro").mkdir(mode=0o700)
    db = data_dir / "maestro" / "main.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    key = tmp_path / "key"
    write_key_file(key)
    view = tmp_path / "read-only"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(data_dir), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        backups = []
        for step in ("running", "stopped"):
            if step == "stopped":
                writer.execute("INSERT INTO t VALUES (2)")
                writer.close()  # the last connection: SQLite removes -wal and -shm
                assert not (data_dir / "maestro" / "main.db-shm").exists()
            done = run_cli(
                "backup", "create", "--data-dir", str(view), "--out", str(tmp_path / "out"),
                "--keep", "5", "--key-file", str(key),
            )  # fmt: skip
            backups.append(Path(done.stdout.split()[1]))
    finally:
        subprocess.run(["umount", str(view)], check=False)
        with contextlib.suppress(sqlite3.Error):
            writer.close()
    for archive, expected in zip(backups, ([(1,)], [(1,), (2,)]), strict=True):
        target = tmp_path / f"restored-{archive.stem}"
        run_cli(
            "backup", "restore", str(archive), "--data-dir", str(target), "--key-file", str(key)
        )
        copy = sqlite3.connect(target / "maestro" / "main.db")
        try:
            assert list(copy.execute("SELECT x FROM t ORDER BY x")) == expected
        finally:
            copy.close()
