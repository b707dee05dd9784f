"""Secrets never reach a log line: a filter on the server's loggers that redacts them.

Browsers cannot set headers on a websocket, so scripts pass their API token as
``?token=``; uvicorn logs every request line and websocket path with its query string.
The filter rewrites each record of those loggers (and of Areté's own) before any handler
formats it: the value of a credential query parameter, and anything shaped like an API
token (``arete_<id>_<secret>``), become ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

REDACTED: Final = "[redacted]"
# Query parameters whose values are credentials, wherever they appear in a message.
SECRET_PARAMS: Final = ("token", "access_token", "password", "session", "arete_session")
_PARAM_RE: Final = re.compile(
    r"(?i)([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&;\s\"'#]*",
)
# arete_<16 hex>_<secret>: web_api.auth.users.TOKEN_RE, loosened to catch a cut one.
_TOKEN_RE: Final = re.compile(r"arete_[0-9a-f]{16}_[A-Za-z0-9_-]+")
LOGGERS: Final = ("uvicorn.access", "uvicorn.error", "uvicorn", "arete", "arete.web")


def redact(text: str) -> str:
    """``text`` with credential query values and API tokens replaced by ``[redacted]``."""
    return _TOKEN_RE.sub(REDACTED, _PARAM_RE.sub(r"\1" + REDACTED, text))


def _clean(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Redacts the record's format string and each of its string arguments in place.

    The arguments keep their places: uvicorn's access formatter unpacks them (client,
    method, path, version, status). The record is always kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(arg) for key, arg in record.args.items()}
        return True


def install_log_redaction() -> None:
    """Attach the filter to the server's loggers (idempotent).

    A logger's filters see only the records logged on that very logger, so each logger
    that writes request paths is named here, uvicorn's access and error loggers first.
    """
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
