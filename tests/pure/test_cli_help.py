"""``--help`` of every ``arete`` command reads well on an 80-column terminal: no line
over 80 columns, no ``<bool>`` metavar beside flags, no RST/Markdown backticks."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from arete_cli.main import app
from edge_agent.entry import main as agent_entry


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def assert_reads_well(text: str) -> None:
    assert text.strip()
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
    assert "<bool>" not in text
    assert "`" not in text, [line for line in text.splitlines() if "`" in line]
    assert "\x1b[" not in text  # no colour codes
    description = re.split(r"\n(?:Options|options|Arguments):", text)[0]
    lines = description.splitlines()
    for before, line in itertools.pairwise(lines):
        # An example is printed as written: never joined to, or split from, its neighbour.
        if line.startswith("    ") and not before.rstrip().endswith("\\"):
            assert line.lstrip().startswith(("arete ", "ARETE_")), f"broken example: {line!r}"
        assert " \\ " not in line, f"joined example: {line!r}"


def test_every_sub_command_is_checked() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"up", "broker run", "users list", "web run", "agents add", "keys show"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "arete")
def test_help_fits_80_columns_without_bool_metavars_or_backticks(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert_reads_well(result.output)


def test_agent_run_help_of_the_light_entry_point_reads_well(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``arete agent run`` is served by argparse (edge_agent.entry), not Typer."""
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        agent_entry(["--help"])
    assert done.value.code == 0
    assert_reads_well(out.getvalue())
    assert "--config" in out.getvalue()


def test_web_run_help_shows_no_tls_port_in_its_example() -> None:
    result = CliRunner().invoke(app, ["web", "run", "--help"], env={"COLUMNS": "80"})
    assert "8443" not in result.output
    assert "arete web run --data-dir" in result.output
