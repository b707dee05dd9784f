"""``arete agent ...``: run the edge agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

agent_app = typer.Typer(help="Run the edge agent on this machine.", no_args_is_help=True)


@agent_app.command("run")
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Agent TOML file (from 'arete agents add')."),
    ] = None,
) -> None:
    """Run the agent in the foreground until SIGTERM/Ctrl-C.

    Settings come from the config file, overridden by ARETE_AGENT_* variables
    (nested keys with a double underscore: ARETE_AGENT_MQTT__HOST=broker.lan).

    Exit status: 0 after SIGTERM/Ctrl-C, 64 after a 'stop' command, 75 after a
    'restart' command under systemd (elsewhere the agent re-executes itself),
    2 for a configuration error.

    'arete agent run' itself is served by a light entry point (edge_agent.entry) that
    does not load Typer; this command documents it and serves programmatic use.

    Example: arete agent run --config /etc/arete/agent.toml
    """
    from edge_agent.entry import config_problem
    from edge_agent.errors import ConfigError
    from edge_agent.main import run as run_agent
    from edge_agent.settings import load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {config_problem(exc, config)}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_agent(settings))


@agent_app.command(
    "updater", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def updater(ctx: typer.Context) -> None:
    """The root host updater of self-updates (docs/updates.md), run by systemd's
    arete-agent-update.service: installs a release the agent verified beside the current
    version, switches /opt/arete/current, restarts the agent and switches back unless the
    new version reports healthy in time. 'arete agent updater --help' lists its options.

    Example: arete agent updater --config /etc/arete/agent.toml
    """
    from edge_agent.updater import main as updater_main

    raise typer.Exit(updater_main(ctx.args))
