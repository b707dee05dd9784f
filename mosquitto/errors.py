"""The one exception tree of the broker package. Callers catch :class:`BrokerError`.

Every message says what is wrong and what to do about it, because these errors end up
printed by ``arete broker ...`` and ``arete agents ...`` as they are.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error raised by the ``mosquitto`` package."""


class MosquittoNotInstalled(BrokerError):  # noqa: N818 - reads as the condition it reports
    """The Mosquitto executable was not found."""

    def __init__(self, searched: str) -> None:
        super().__init__(
            f"Mosquitto is not installed (looked for {searched}); "
            "install it with: apt-get install -y mosquitto"
        )


class BrokerConfigError(BrokerError):
    """An option given for the broker (port, bind host, data dir, root) is invalid."""


class BrokerNotSetUp(BrokerError):  # noqa: N818 - reads as the condition it reports
    """The data dir has no broker yet (``arete broker run`` never ran there)."""


class BrokerAlreadyRunning(BrokerError):  # noqa: N818 - reads as the condition it reports
    """Another broker process already serves this data dir."""


class ReloadNotPermitted(BrokerError):  # noqa: N818 - reads as the condition it reports
    """The running broker belongs to another user, so this process cannot signal it."""


class DataDirError(BrokerError):
    """A file or directory of the data dir cannot be created, read or written."""


class PasswordFileError(BrokerError):
    """The Mosquitto password file cannot be read or has a line we do not understand."""


class AccountExists(BrokerError):  # noqa: N818 - reads as the condition it reports
    """An agent with this id already has broker credentials (rotate to replace them)."""


class UnknownAgent(BrokerError):  # noqa: N818 - reads as the condition it reports
    """No agent with this id has broker credentials or a config in the data dir."""


class TlsError(BrokerError):
    """The TLS files are missing, unreadable, or cannot be generated."""


class PluginBuildError(BrokerError):
    """The broker's client-id plugin cannot be built (no compiler or headers, ...)."""
