"""``arete up``: the whole stack on embedded defaults (filled in later)."""

from __future__ import annotations


def up() -> None:
    """Run the broker and a local agent (later: maestro, API and dashboard)."""
    raise NotImplementedError
