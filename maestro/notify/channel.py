"""What the dispatcher needs from a channel, and how a delivery attempt ended.

A channel turns every answer of its service into an :class:`Outcome` (never an
exception): ``sent``; ``retry_after`` (a 429 with the wait the service asked for);
``retry`` (5xx, timeouts, network errors: retried with backoff); ``refused`` (a bad
token, an unknown chat or webhook, a malformed message: failed for good).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from maestro.notify.message import Notice
from maestro.notify.ratelimit import RateLimit

OutcomeKind = Literal["sent", "retry_after", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""
    # retry_after: the wait the service asked for; sent: a pause the service announced
    # (e.g. Discord's bucket is empty for that long).
    delay_s: float = 0.0

    @classmethod
    def sent(cls, pause_s: float = 0.0) -> Outcome:
        return cls("sent", delay_s=pause_s)

    @classmethod
    def retry_after(cls, seconds: float, reason: str) -> Outcome:
        return cls("retry_after", reason, max(0.0, seconds))

    @classmethod
    def retry(cls, reason: str) -> Outcome:
        return cls("retry", reason)

    @classmethod
    def refused(cls, reason: str) -> Outcome:
        return cls("refused", reason)


class Channel(Protocol):
    """One destination (a Telegram chat, a Discord webhook) with its own rate limit."""

    @property
    def name(self) -> str: ...

    def new_limit(self) -> RateLimit: ...

    async def send(self, notice: Notice) -> Outcome: ...

    async def aclose(self) -> None: ...


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, for logs and stored errors."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def quiet_url_loggers() -> None:
    """Keep HTTP libraries from logging request URLs, which carry the bot token and the
    webhook secret: httpx logs every request at INFO, PTB its base URL at DEBUG."""
    for name in ("httpx", "httpcore", "telegram", "hpack"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
