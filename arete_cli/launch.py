"""The ``arete`` console script.

``arete agent run`` goes straight to the agent's light entry point, so that the agent
process never imports Typer (nor does ``arete agent updater``); every other command goes
through the Typer application.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["broker", "run"]:
        # SIGHUP means "reload the accounts" (systemctl reload arete-broker). Until the
        # broker runs and forwards it (mosquitto/runner.py), its default action would
        # end this process; the imports before that take seconds on a busy host, and a
        # reload sent right after a start then left the broker down for good (systemd
        # counts SIGHUP as a clean exit). Ignored, and inherited as ignored by Mosquitto
        # until it sets its own handler: it reads the accounts as it starts anyway.
        import signal

        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args[:2] == ["agent", "run"]:
        from edge_agent.entry import main as agent_main

        sys.exit(agent_main(args[2:], prog="arete agent run"))
    if args[:2] == ["agent", "updater"]:  # root, at every update: no Typer either
        from edge_agent.updater import main as updater_main

        sys.exit(updater_main(args[2:]))
    from arete_cli.main import main as cli_main

    cli_main()
