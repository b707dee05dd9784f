"""Token buckets per key (client IP, user, login IP): pure, driven by a clock.

``take(key, now)`` returns 0.0 when the request may go, else the seconds to wait
(the ``Retry-After``). Idle buckets are forgotten so the table stays small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self.refused = 0

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        self.refused += 1
        return (cost - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b.at >= full_after]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= MAX_KEYS:  # all busy: drop the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].at)[: MAX_KEYS // 2]:
                del self._buckets[key]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
