"""``python -m edge_agent --config FILE``: the agent without the full CLI (lighter)."""

from __future__ import annotations

import argparse
import sys

from edge_agent.errors import ConfigError
from edge_agent.main import run
from edge_agent.settings import load_settings


def _main() -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent", description=__doc__)
    parser.add_argument("--config", "-c", help="agent TOML file")
    options = parser.parse_args()
    try:
        settings = load_settings(options.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(settings)


sys.exit(_main())
