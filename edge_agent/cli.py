"""``arete agent ...``: run the edge agent."""

from __future__ import annotations

from pathlib import Path

import typer

agent_app = typer.Typer(help="Run the edge agent on this machine.", no_args_is_help=True)


@agent_app.command("run")
def run(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Agent TOML file (from `arete agents add`)."
    ),
) -> None:
    """Run the agent in the foreground until SIGTERM/Ctrl-C.

    Settings come from the config file, overridden by ARETE_AGENT_* variables
    (nested keys with a double underscore: ARETE_AGENT_MQTT__HOST).

    Example: arete agent run --config /etc/arete/agent.toml
    """
    raise NotImplementedError  # filled in by the agent runtime
