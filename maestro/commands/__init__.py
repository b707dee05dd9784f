"""The command service: signed commands to agents, their lifecycle in SQLite, timeouts.

See ``docs/commands.md``. The web API calls :class:`CommandService`; the maestro opens
the store with :data:`COMMAND_MIGRATIONS` under the component name ``"commands"``.
"""

from __future__ import annotations

from maestro.commands.lifecycle import CommandState
from maestro.commands.records import COMMAND_MIGRATIONS, CommandEvent, CommandRecord
from maestro.commands.service import CommandService
from maestro.commands.settings import CommandSettings

__all__ = [
    "COMMAND_MIGRATIONS",
    "CommandEvent",
    "CommandRecord",
    "CommandService",
    "CommandSettings",
    "CommandState",
]
