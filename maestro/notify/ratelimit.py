"""Per-channel send limits as a pure value: ``acquire(limit, now) -> (limit, wait_s)``.

The chat services state their limits as "N messages per W seconds" (Telegram about one
message a second per chat, Discord 5 requests per 2 s per webhook). A token bucket
with a burst of N lets up to 2N through in some W-second window (a full bucket plus
its refill), which is exactly what earns a 429. So this keeps the times of the last N
sends (a sliding-window log) and grants a send only when the oldest of them left the
window: never more than N in any W seconds, and no waiting while under the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` sends in any ``window_s`` seconds; ``sent`` = recent send times."""

    limit: int
    window_s: float
    sent: tuple[float, ...] = ()
    paused_until: float = 0.0  # the service asked us to wait (429, bucket exhausted)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_s > 0")

    def wait_s(self, now: float) -> float:
        """Seconds until the next send is allowed (0 when it is allowed now)."""
        wait = max(0.0, self.paused_until - now)
        if len(self.sent) >= self.limit:
            oldest_in_window = self.sent[-self.limit]
            wait = max(wait, oldest_in_window + self.window_s - now)
        return wait

    def pause(self, until: float) -> RateLimit:
        return replace(self, paused_until=max(self.paused_until, until))


def acquire(limit: RateLimit, now: float) -> tuple[RateLimit, float]:
    """Take one send slot at ``now``: ``(new_limit, 0.0)``, or ``(limit, wait_s)`` if full.

    The caller sleeps ``wait_s`` and asks again; only a granted send is recorded.
    """
    wait = limit.wait_s(now)
    if wait > 0:
        return limit, wait
    recent = (*limit.sent[-(limit.limit - 1) :], now) if limit.limit > 1 else (now,)
    return replace(limit, sent=recent), 0.0
