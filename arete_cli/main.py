"""Entry point of the ``arete`` command.

Each package owns its sub-commands; this module only composes them. Sub-apps import
their heavy dependencies inside the commands, so ``arete --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from arete.version import __version__
from arete_cli.agents import agents_app
from arete_cli.backup.cli import backup_app
from arete_cli.fleet import fleet_app
from arete_cli.release import release_app
from arete_cli.up import up
from edge_agent.cli import agent_app
from maestro.cli import maestro_app
from maestro.keys_cli import keys_app
from mosquitto.cli import broker_app
from web_api.cli import users_app, web_app

app = typer.Typer(
    name="arete",
    help="Areté: live telemetry and safe commands for a fleet of machines over MQTT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(broker_app, name="broker")
app.add_typer(agents_app, name="agents")
app.add_typer(agent_app, name="agent")
app.add_typer(maestro_app, name="maestro")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(web_app, name="web")
app.add_typer(backup_app, name="backup")
app.add_typer(fleet_app, name="fleet")
app.add_typer(release_app, name="release")
app.command("up")(up)
# Plain help everywhere: Click's layout wraps at the terminal's width and shows no
# metavar for flags (Rich's tables showed `<bool>` beside every one).
for _group in app.registered_groups:
    if _group.typer_instance is not None:
        _group.typer_instance.rich_markup_mode = None


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Areté command line."""


def main() -> None:
    """Run the command; a wrong argument is one ``error:`` line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # Click's usage and parameter errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        exit_code = int(getattr(exc, "exit_code", 2))
        if type(exc).__name__ == "NoArgsIsHelpError":  # `arete users`: the group's help
            typer.echo(message)
            sys.exit(exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
