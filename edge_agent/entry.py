"""The agent's light command line: ``arete agent run``, ``arete-agent``, ``python -m edge_agent``.

It uses argparse, not Typer: Typer (with click and, when installed, pydantic) would add
about 10 MiB to a process that runs on every machine of the fleet for months.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

DESCRIPTION = """\
Run the edge agent in the foreground until SIGTERM/Ctrl-C.

Settings come from the config file, overridden by ARETE_AGENT_* variables
(nested keys with a double underscore: ARETE_AGENT_MQTT__HOST=broker.lan).
"""

EPILOG = """\
exit status: 0 after SIGTERM/Ctrl-C, 64 after a 'stop' command, 75 after a
'restart' command under systemd (elsewhere the agent re-executes itself), 2 for
a configuration error or when another agent process already uses the same
state directory, 70 for an internal error. After SIGTERM the agent exits
within 5 s, whatever a command is doing.

example: arete agent run --config /etc/arete/agent.toml
"""


def main(argv: Sequence[str] | None = None, prog: str = "arete agent run") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="agent TOML file (arete agents add)")
    options = parser.parse_args(argv)

    from edge_agent.errors import ConfigError
    from edge_agent.main import run
    from edge_agent.settings import load_settings

    try:
        settings = load_settings(options.config)
    except ConfigError as exc:
        print(f"error: {config_problem(exc, options.config)}", file=sys.stderr)
        return 2
    return run(settings)


NO_CONFIG: Final = (
    "no agent config given: run it with the file 'arete agents add ID' wrote, as in "
    "arete agent run --config DATA_DIR/agents/ID.toml (or set ARETE_AGENT_ID and the "
    "other ARETE_AGENT_* variables)"
)


def config_problem(exc: Exception, config: object) -> str:
    """The sentence for a settings error; without ``--config`` it says how to give one."""
    if config is None and "missing required field" in str(exc):
        return NO_CONFIG
    return str(exc)


def console() -> None:
    """The ``arete-agent`` console script."""
    sys.exit(main(prog="arete-agent"))
