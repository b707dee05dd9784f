"""The one stream ``arete up`` prints: every child's lines, each prefixed with its
component (broker, maestro, web, agent), in one timestamp format.

Children log JSON (``arete.logs``), Mosquitto logs ``TIME: text`` lines and a few
commands print plain text; :func:`parse` turns each into a :class:`Line`, and
:func:`render` prints it for people (``HH:MM:SS component | message key=value``) or
as one JSON object for machines. Per-request access lines and debug lines are kept
only at ``--log-level debug``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Final, Literal

from arete.logs import iso_time

Format = Literal["console", "json"]
LEVELS: Final = {"debug": 10, "info": 20, "notice": 20, "warning": 30, "error": 40, "critical": 50}
WIDTH: Final = max(len(name) for name in ("broker", "maestro", "web", "agent", "up"))

# Mosquitto's lines: "2026-12-06T06:49:09: Warning: text" (log_timestamp_format) or
# "1796539591: text" (its default).
_MOSQUITTO: Final = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|\d{9,11}): (?:(?P<level>Warning|Error|Notice|"
    r"Information|Debug): )?(?P<text>.*)$"
)
# Mosquitto's lines about a TCP connection before (or without) an MQTT client in it.
_TCP_ONLY: Final = ("New connection from ", "Client <unknown> ")
# uvicorn's own format, should it ever print without our logging: "INFO:     text".
_UVICORN: Final = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class Line:
    ts: float
    component: str
    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    logger: str = ""

    @property
    def is_access(self) -> bool:
        return self.logger == "uvicorn.access"


def component_of(default: str, logger: str) -> str:
    """``arete web run`` is the maestro and the web API in one process: its lines say
    which of the two wrote them."""
    if default in ("maestro", "web"):
        if logger.startswith("arete.maestro") or logger.startswith("maestro"):
            return "maestro"
        return "web"
    return default


def parse(component: str, raw: str, now: float | None = None) -> Line | None:
    """The line a child printed, or None for a blank one."""
    text = raw.rstrip("\r\n")
    if not text.strip():
        return None
    stamp = time.time() if now is None else now
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and "event" in document:
            fields = dict(document)
            ts = fields.pop("ts", stamp)
            level = str(fields.pop("level", "info")).lower()
            logger = str(fields.pop("logger", ""))
            event = str(fields.pop("event"))
            return Line(
                ts=_json_time(ts, stamp),
                component=component_of(component, logger),
                level=level,
                event=event,
                fields=fields,
                logger=logger,
            )
    found = _MOSQUITTO.match(text)
    if found is not None:
        level = (found["level"] or "info").lower()
        level = {"information": "info", "notice": "info"}.get(level, level)
        if found["text"].startswith(_TCP_ONLY):
            level = "debug"  # a bare TCP connection (a port probe); clients are logged by id
        return Line(
            ts=_mosquitto_time(found["ts"], stamp),
            component=component,
            level=level,
            event=found["text"],
        )
    found = _UVICORN.match(text)
    if found is not None:
        return Line(
            ts=stamp, component=component, level=found["level"].lower(), event=found["text"]
        )
    level = (
        "error"
        if text.startswith("error:")
        else "warning"
        if text.startswith("warning:")
        else "info"
    )
    return Line(ts=stamp, component=component, level=level, event=text)


def _json_time(value: object, default: float) -> float:
    """``ts`` of a JSON log line: ISO 8601 (arete.logs) or epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return default
    return default


def _mosquitto_time(value: str, default: float) -> float:
    if value.isdigit():
        return float(value)
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return default


def wanted(line: Line, level: str) -> bool:
    """Shown at ``level``: access lines only at debug, and nothing below ``level``."""
    if line.is_access and level != "debug":
        return False
    return LEVELS.get(line.level, 20) >= LEVELS.get(level, 20)


def render(line: Line, fmt: Format) -> str:
    if fmt == "json":
        document = {
            "ts": iso_time(line.ts),
            "component": line.component,
            "level": line.level,
            "event": line.event,
            **({"logger": line.logger} if line.logger else {}),
            **line.fields,
        }
        return json.dumps(document, default=str, ensure_ascii=False)
    stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
    level = "" if line.level == "info" else f"{line.level.upper()} "
    pairs = " ".join(f"{key}={_value(value)}" for key, value in line.fields.items())
    return f"{stamp} {line.component:<{WIDTH}} | {level}{line.event} {pairs}".rstrip()


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


class Output:
    """Where ``arete up`` prints: the children's lines (one reader thread each) and its
    own, one whole line at a time."""

    def __init__(self, fmt: Format, level: str, out: IO[str] | None = None) -> None:
        self.fmt: Format = fmt
        self.level = level
        self._out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []

    def write(self, line: Line) -> None:
        if not wanted(line, self.level):
            return
        text = render(line, self.fmt)
        with self._lock:
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more to say
                pass

    def say(self, text: str, level: str = "info") -> None:
        """A line of ``up`` itself."""
        self.write(Line(ts=time.time(), component="up", level=level, event=text))

    def follow(self, component: str, stream: IO[bytes]) -> None:
        """Print what a child writes to ``stream`` until it closes."""

        def pump() -> None:
            with stream:
                for raw in stream:
                    line = parse(component, raw.decode("utf-8", "replace"))
                    if line is not None:
                        self.write(line)

        reader = threading.Thread(target=pump, name=f"output-{component}", daemon=True)
        reader.start()
        self._readers.append(reader)

    def drain(self, timeout: float = 2.0) -> None:
        """Let the readers print what the stopped children said last."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
