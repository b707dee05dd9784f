"""The ``arete`` console script.

``arete agent run`` goes straight to the agent's light entry point, so that the agent
process never imports Typer (nor does ``arete agent updater``); every other command goes
through the Typer application.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["agent", "run"]:
        from edge_agent.entry import main as agent_main

        sys.exit(agent_main(args[2:], prog="arete agent run"))
    if args[:2] == ["agent", "updater"]:  # root, at every update: no Typer either
        from edge_agent.updater import main as updater_main

        sys.exit(updater_main(args[2:]))
    from arete_cli.main import main as cli_main

    cli_main()
