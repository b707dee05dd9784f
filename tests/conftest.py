"""Test tiers by directory: tests/pure (tier 1), tests/real (tier 2), tests/e2e (tier 3),
tests/faults (fault injection on real processes).

Run tier 1 alone with ``pytest -m pure``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.procs",
    "tests.fixtures.mqtt",
    "tests.fixtures.broker",
    "tests.fixtures.display",
    "tests.fixtures.podman",
    "tests.fixtures.registry",
    "tests.fixtures.agent",
    "tests.fixtures.maestro",
    "tests.fixtures.victoria",
    "tests.fixtures.chat_servers",
    "tests.fixtures.api",
    "tests.fixtures.faults",
    "tests.fixtures.browser",
    "tests.fixtures.stale_ports",  # port forwards left by killed sessions, removed first
    "tests.fixtures.ci",  # in CI (CI=true) a skip fails: no tier hides behind a missing tool
]

_TIERS = {"pure": "pure", "real": "real", "e2e": "e2e", "faults": "faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _TIERS.get(Path(str(item.fspath)).parent.name)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
