"""The one exception tree of the contract package.

Callers catch :class:`AreteError`; the subclasses say which part of the contract
was broken so that a caller can turn it into a clear, typed answer (a ``rejected``
reply, an HTTP 4xx, a counted drop).
"""

from __future__ import annotations


class AreteError(Exception):
    """Base of every error raised by the ``arete`` contract package."""


class TopicError(AreteError, ValueError):
    """A topic or an agent id does not follow the contract."""


class PayloadError(AreteError, ValueError):
    """A payload could not be decoded or does not match its schema.

    ``code`` is a short machine-readable reason (``malformed``, ``too_large``,
    ``schema``) that ends up in replies and drop counters.
    """

    def __init__(self, message: str, *, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


class CommandArgsError(PayloadError):
    """A command's arguments do not match the argument model of its name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_args")


class UnknownCommandError(PayloadError):
    """A command name that is not on the allowlist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown command {name!r}", code="unknown_command")
        self.name = name


class ReleaseRefused(AreteError, ValueError):  # noqa: N818 - the name the plan and agents use
    """A signed release (or one of its artifacts) that must not be installed.

    ``code`` is the reply code an agent answers with (docs/updates.md): ``bad_manifest``,
    ``unsigned``, ``unknown_key``, ``bad_signature``, ``expired``, ``downgrade``,
    ``too_old``, ``tampered``, ``fetch_failed``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyFormatError(AreteError, ValueError):
    """A public key that is neither base64 of a raw 32-byte Ed25519 key nor Ed25519 PEM."""
