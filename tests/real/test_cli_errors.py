"""Every ``arete`` sub-command given a wrong data dir: one ``error:`` line, exit code 2,
no traceback, and nothing created by a command that only reads."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from arete_cli.main import app
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.procs import ARETE, REPO, free_port

# Commands that need the data dir an earlier `arete up` / `arete broker run` made.
NEEDS_DATA_DIR = [
    ["agents", "add", "a1"],
    ["agents", "remove", "a1"],
    ["agents", "list"],
    ["maestro", "run"],
    ["maestro", "retire", "--replica", "b"],
    ["keys", "show"],
    ["users", "add", "bob"],
    ["users", "passwd", "bob"],
    ["users", "list"],
    ["users", "remove", "bob"],
    ["users", "tokens", "bob"],
    ["users", "token-add", "bob"],
    ["users", "revoke", "bob", "0123456789abcdef"],
    ["web", "run", "--port", "65000"],
    ["broker", "passwd", "a1", "--remove"],
    ["backup", "create", "--out", "/nonexistent/arete-backups"],
    ["release", "list"],
    ["release", "add", "/nonexistent/arete-release"],
]
# Commands that set a data dir up, and so may create a missing one.
SETS_UP_DATA_DIR = [
    ["up", "--mqtt-port", "65001", "--http-port", "65002"],
    ["broker", "run", "--port", "65003"],
    ["broker", "tls-init"],
    ["keys", "create"],
    ["broker", "passwd", "maestro"],  # provisioning before the first broker run
]


def test_every_command_with_a_data_dir_is_in_one_of_the_lists() -> None:
    def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        subs = getattr(command, "commands", None)
        if not subs:
            if any("--data-dir" in getattr(p, "opts", []) for p in command.params):
                yield path
            return
        for name, sub in sorted(subs.items()):
            yield from leaves(sub, (*path, name))

    # backup restore's --data-dir is the target of a restore, checked after the archive
    # and its key (the backup tests cover it).
    listed = [tuple(c) for c in [*NEEDS_DATA_DIR, *SETS_UP_DATA_DIR, ["backup", "restore"]]]
    missing = [
        " ".join(path)
        for path in leaves(typer.main.get_command(app))
        if not any(c[: len(path)] == path for c in listed)
    ]
    assert not missing, f"add to NEEDS_DATA_DIR or SETS_UP_DATA_DIR: {sorted(missing)}"


def arete(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARETE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    return {"missing": tmp_path / "typo", "empty": empty, "file": a_file}


def _name(command: list[str]) -> str:
    return " ".join(word for word in command[:2])


@pytest.mark.parametrize("command", NEEDS_DATA_DIR, ids=_name)
def test_a_missing_empty_or_file_data_dir_is_one_line_and_exit_2_and_creates_nothing(
    command: list[str], places: dict[str, Path]
) -> None:
    for kind, path in places.items():
        before = sorted(p.name for p in path.parent.rglob("*"))
        done = arete(*command, "--data-dir", str(path))
        assert_one_clear_line(done, str(path))
        assert sorted(p.name for p in path.parent.rglob("*")) == before, kind
    # An empty value must never mean the current directory.
    assert_one_clear_line(arete(*command, "--data-dir", ""), "--data-dir is empty")


@pytest.mark.parametrize("command", SETS_UP_DATA_DIR, ids=_name)
def test_the_commands_that_create_a_data_dir_refuse_a_file_empty_text_or_a_path_under_a_file(
    command: list[str], places: dict[str, Path]
) -> None:
    assert_one_clear_line(arete(*command, "--data-dir", str(places["file"])), "not a directory")
    assert_one_clear_line(arete(*command, "--data-dir", ""), "--data-dir is empty")
    under_a_file = places["file"] / "data"
    assert_one_clear_line(arete(*command, "--data-dir", str(under_a_file)), str(places["file"]))


def test_users_commands_read_arete_data_dir_and_list_creates_no_user_store(
    broker: Broker,
) -> None:
    env = {"ARETE_DATA_DIR": str(broker.data_dir)}
    users_db = broker.data_dir / "web" / "users.db"
    listed = arete("users", "list", env=env)
    assert_one_clear_line(listed, "no users yet")
    assert not users_db.exists()
    added = arete("users", "add", "ci", "--role", "operator", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("arete_")
    listed = arete("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("ci\toperator\t")


def test_web_run_on_a_broker_dir_without_the_maestro_password_makes_no_admin(
    broker: Broker,
) -> None:
    """A start that cannot succeed does not use up admin's one-time password."""
    password = broker.data_dir / "secrets" / "maestro.password"
    saved = password.read_bytes()
    password.unlink()
    try:
        done = arete("web", "run", "--data-dir", str(broker.data_dir), "--port", str(free_port()))
        assert_one_clear_line(done, "maestro")
        assert "admin" not in done.stdout
        assert not (broker.data_dir / "web" / "users.db").exists()
    finally:
        password.write_bytes(saved)
        password.chmod(0o600)


def test_agent_run_without_config_says_how_to_give_one() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARETE_AGENT_")}
    typer_command = 'from edge_agent.cli import agent_app; agent_app(["run"])'
    for argv in ([*ARETE, "agent", "run"], [ARETE[0], "-c", typer_command]):
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False, env=env
        )
        assert_one_clear_line(done, "--config", "arete agents add")
        assert "missing required field" not in done.stderr


def test_agents_list_still_lists_on_a_good_data_dir(broker: Broker) -> None:
    broker.add_agent("a1")
    listed = run_cli("agents", "list", "--data-dir", str(broker.data_dir))
    assert listed.stdout.startswith("a1 ")
