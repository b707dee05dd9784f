"""The one exception tree of the maestro. Callers catch :class:`MaestroError`.

Each subclass names the part that failed, so a caller (the CLI, the web API) can turn
it into a clear answer: an exit code with one line, an HTTP 4xx/5xx with a reason.
"""

from __future__ import annotations


class MaestroError(Exception):
    """Base of every error the maestro raises on purpose."""


class ConfigError(MaestroError):
    """Settings, a rules file or a key file are missing or invalid."""


class StoreError(MaestroError):
    """The SQLite store cannot be opened, migrated or written."""


class QueryError(StoreError):
    """A history or listing query cannot be answered (unknown field, bad range...)."""


class LinkError(MaestroError):
    """The MQTT link is down, or the broker refused a publish."""


class CommandError(MaestroError):
    """A command cannot be issued: unknown agent, bad name or arguments, not found."""

    def __init__(self, message: str, *, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class AlertError(MaestroError):
    """An alert rule, silence or acknowledgement is invalid, or the alert is unknown."""


class NotifierError(MaestroError):
    """A notification channel refused a message for good (bad token, unknown chat)."""


class SinkError(MaestroError):
    """The long-term store (InfluxDB API) could not take a batch; it will be retried."""


class ReleaseError(MaestroError):
    """The release store cannot take a release (it exists already, the disk refused)."""
