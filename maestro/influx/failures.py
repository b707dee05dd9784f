"""What a failed write to InfluxDB means and when to try again (pure, no I/O).

influxdb-client, urllib3 and the OS raise different exceptions; the sink reads each as
a :class:`WriteFailure` of one of three kinds, and tells a bad point (which must never
block the spool) from a refused request (which keeps the rows until the config is fixed).
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Final, Literal

from arete.backoff import Backoff
from maestro.errors import SinkError

MAX_RETRY_AFTER_S: Final = 3600.0  # a server asking for more is still retried hourly
ERROR_TEXT_MAX: Final = 300
# What InfluxDB (and VictoriaMetrics) say about one bad point rather than the request.
_POINT_FAULT: Final = re.compile(
    r"pars|partial write|retention|conflict|unprocessable|out of range|timestamp", re.I
)


FailureKind = Literal["unavailable", "throttled", "rejected"]


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """``unavailable``: down, 5xx, timeout; ``throttled``: 429; ``rejected``: other 4xx."""

    kind: FailureKind
    status: int | None
    text: str
    retry_after_s: float | None = None


def classify_failure(exc: BaseException, now: float | None = None) -> WriteFailure:
    """Read an exception of influxdb-client, urllib3 or the OS as a :class:`WriteFailure`."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or isinstance(status, bool):
        detail = str(exc).splitlines()[0] if str(exc) else ""
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return WriteFailure("unavailable", None, text[:ERROR_TEXT_MAX])
    message = getattr(exc, "message", None) or getattr(exc, "reason", None) or ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = f"HTTP {status}: {str(message).strip()}"[:ERROR_TEXT_MAX]
    retry_after = parse_retry_after(getattr(exc, "retry_after", None), now)
    if status == 429:
        return WriteFailure("throttled", status, text, retry_after)
    if status == 503 and retry_after is not None:
        return WriteFailure("throttled", status, text, retry_after)
    if 400 <= status < 500 and status != 408:
        return WriteFailure("rejected", status, text)
    return WriteFailure("unavailable", status, text)


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER_S)


def is_point_fault(failure: WriteFailure) -> bool:
    """True when the server refused points of the body, not the request itself."""
    if failure.status == 422:
        return True
    return failure.status == 400 and bool(_POINT_FAULT.search(failure.text))


class PointsRefusedError(SinkError):
    """Every line of a batch was refused alone: the fault is not in the points."""

    def __init__(self, failure: WriteFailure) -> None:
        super().__init__(failure.text)
        self.failure = failure


def retry_delay(failure: WriteFailure, backoff: Backoff, slow_s: float) -> float:
    """How long to wait after ``failure``: what the server asked, backoff, or slowly."""
    if failure.retry_after_s is not None:
        backoff.next()  # still counts as an attempt if the server stops asking
        return max(failure.retry_after_s, backoff.min_s)  # "0" must not make a busy loop
    if failure.kind == "rejected":
        return slow_s  # a config mistake: no point hammering, but keep trying
    return backoff.next()
