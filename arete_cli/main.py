"""Entry point of the ``arete`` command.

Each package owns its sub-commands; this module only composes them. Sub-apps import
their heavy dependencies inside the commands, so ``arete --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from arete.version import __version__
from arete_cli.agents import agents_app
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
)
app.add_typer(broker_app, name="broker")
app.add_typer(agents_app, name="agents")
app.add_typer(agent_app, name="agent")
app.add_typer(maestro_app, name="maestro")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(web_app, name="web")
app.command("up")(up)


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
    app()
