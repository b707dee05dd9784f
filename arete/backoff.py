"""Jittered exponential backoff: the one place retry and reconnect delays are computed.

Pure (no I/O, no sleeping): the agent's link, the maestro's notifiers and its InfluxDB sink
ask it how long to wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next()`` gives ``uniform(0.5, 1) * min(max_s, min_s * 2**attempt)`` ("equal jitter").

    Jitter keeps a fleet that lost its broker from reconnecting in lockstep.
    """

    def __init__(
        self, min_s: float, max_s: float, rand: Callable[[], float] = random.random
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rand = rand
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2.0 ** min(self.attempt, 30)))
        self.attempt += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self.attempt = 0
