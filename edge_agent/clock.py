"""How far the agent's clock is from the maestro's, learnt from what the maestro stamps.

Every message stamped by the maestro (a command's ``issued_at``, a ``ts`` the maestro
sends) arrives after it was stamped, never before: ``local time - stamp`` is the clock
offset plus a delay that is never negative. The smallest such value seen recently is
therefore the best estimate of the offset (the NTP minimum filter). Only a window of
recent observations counts, so a clock that is corrected is followed within
:data:`WINDOW_S`.

A clock that steps (NTP correcting it, someone setting it) must be followed sooner:
the old minimum would make every command look older by the step. Messages the maestro
sends live (the ``stored`` acknowledgements, QoS 0, never queued) arrive within a
moment, so one that shows an offset more than :data:`STEP_S` above the estimate means
a step: the window starts again from it. (A merely late one only makes the estimate
too generous until the next prompt one.) Commands may wait at the broker up to their
lifetime, so they never count as a step.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

WINDOW_S: Final = 60.0
STEP_S: Final = 2.0
MAX_OBSERVATIONS: Final = 512


class MaestroClock:
    """``offset()``: this agent's clock minus the maestro's, in seconds, or None."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._seen: deque[tuple[float, float]] = deque(maxlen=MAX_OBSERVATIONS)

    def observe(
        self, maestro_ts: float, local_ts: float, monotonic: float, *, live: bool = False
    ) -> None:
        """A message stamped ``maestro_ts`` by the maestro arrived at ``local_ts``.

        ``live``: the maestro sent it as it stamped it (never queued), so an offset well
        above the estimate is a clock step, not a delay.
        """
        offset = local_ts - maestro_ts
        if not math.isfinite(offset):
            return
        if live:
            current = self.offset(monotonic)
            if current is not None and offset > current + STEP_S:
                self._seen.clear()
        self._seen.append((monotonic, offset))

    def offset(self, monotonic: float) -> float | None:
        while self._seen and monotonic - self._seen[0][0] > self._window_s:
            self._seen.popleft()
        if not self._seen:
            return None
        return min(offset for _, offset in self._seen)
