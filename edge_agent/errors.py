"""The one exception tree of the edge agent. Callers catch :class:`AgentError`."""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """Base of every error raised by the edge agent."""


class ConfigError(AgentError):
    """The agent's configuration file or environment is invalid (message says where)."""


class StateError(AgentError):
    """The agent's state store (epoch, sequence, command ids, outbox) is unusable."""


class CommandFailed(AgentError):  # noqa: N818 - names the outcome at every raise site
    """A command handler could not do its job.

    ``code`` is the machine-readable reason sent in the reply (``no_display``,
    ``docker_unavailable``, ``not_found``, ``not_allowed``, ``timeout``, ...); ``result``
    is an optional partial result (e.g. a shell's output before a non-zero exit).
    """

    def __init__(self, code: str, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.result = result
