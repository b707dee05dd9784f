"""Logs as data: ``key=value`` on a terminal, one JSON object per line otherwise
(``ts`` in ISO 8601, ``level``, ``logger``, ``event`` and the call's fields).

Call sites pass structured fields with ``extra={"kv": {...}}``. Secrets are never
passed to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from typing import Any, Literal


class _KvFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self._json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "kv", None) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self._json:
            document = {
                "ts": iso_time(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            return json.dumps(document, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {pairs}".rstrip()


def iso_time(ts: float) -> str:
    """The one time format of JSON log lines: local ISO 8601 with milliseconds and offset
    (``2026-12-06T07:30:15.123+01:00``)."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def setup_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KvFormatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho logs nothing unless given a logger; keep third-party chatter at warning.
    logging.getLogger("docker").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
