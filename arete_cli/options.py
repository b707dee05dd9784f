"""The ``--data-dir`` option every sub-command shares: same name, same environment
variable (``ARETE_DATA_DIR``), and a bad value is one ``error:`` line and exit code 2,
before the command reads or writes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from arete.datadir import data_dir_problem

ENVVAR = "ARETE_DATA_DIR"


def data_dir_option(help_text: str, *, create: bool = False) -> Any:
    """A ``typer.Option`` for ``--data-dir``; ``create`` for the commands that set up a
    new data dir (the others refuse a missing or foreign one)."""

    def parse(raw: str | Path) -> Path:
        problem = data_dir_problem(raw, create=create)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)
        return Path(raw)

    return typer.Option("--data-dir", envvar=ENVVAR, metavar="DIR", parser=parse, help=help_text)
