"""``python -m edge_agent --config FILE``: the agent alone, without the ``arete`` CLI."""

from __future__ import annotations

import sys

from edge_agent.entry import main

sys.exit(main(prog="python -m edge_agent"))
