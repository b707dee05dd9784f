"""``ARETE_DATA_DIR`` works everywhere: every ``arete`` command that takes ``--data-dir``
also reads it from the environment, and a wrong one is refused as the option would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from arete_cli.main import app
from arete_cli.options import ENVVAR


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(path, command)]
    return [leaf for name, sub in sorted(subs.items()) for leaf in _leaves(sub, (*path, name))]


def _data_dir(command: click.Command) -> click.Parameter | None:
    return next((p for p in command.params if "--data-dir" in getattr(p, "opts", [])), None)


# A --data-dir that deliberately ignores the environment: the reason.
EXEMPT = {
    ("backup", "restore"): "a restore goes into a new directory named on the command line,"
    " never into the data dir the environment points at",
}
WITH_DATA_DIR = [
    (path, cmd)
    for path, cmd in _leaves(typer.main.get_command(app))
    if _data_dir(cmd) and path not in EXEMPT
]


def _id(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else ""


def test_the_commands_with_a_data_dir_are_found() -> None:
    names = {" ".join(path) for path, _ in WITH_DATA_DIR}
    assert {"up", "broker run", "agents remove", "users list", "web run", "keys show"} <= names


@pytest.mark.parametrize(("path", "command"), WITH_DATA_DIR, ids=_id)
def test_every_data_dir_option_reads_arete_data_dir(
    path: tuple[str, ...], command: click.Command, tmp_path: Path
) -> None:
    option = _data_dir(command)
    assert option is not None
    assert option.envvar == ENVVAR, f"arete {' '.join(path)} ignores {ENVVAR}"
    # Given only through the environment, a file is refused as --data-dir would be.
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    args: list[str] = []
    for param in command.params:  # any value for what is required: the dir fails first
        if param.required and param is not option:
            args += ["x"] if isinstance(param, click.Argument) else [param.opts[0], "x"]
    result = CliRunner().invoke(app, [*path, *args], env={ENVVAR: str(a_file)})
    assert result.exit_code == 2, result.output
    assert str(a_file) in result.output
    assert "Traceback" not in result.output
