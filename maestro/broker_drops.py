"""Messages the broker dropped, made visible.

Past ``max_queued_messages`` Mosquitto drops further messages for a client whose queue
is full (a maestro that fell behind, or one that is down) and tells nobody: the agents
had their PUBACK. It does count them, broker-wide, in ``$SYS/broker/publish/messages/
dropped`` (``arete.topics.BROKER_DROPPED``), a counter since the broker started that it
republishes on change every ``sys_interval``. The maestro reads it, counts the increases
(``arete_maestro_broker_dropped_messages_total``) and logs a warning at most once a
minute.

How readings become drops (:func:`observe`, pure):

- The first reading of this process is the **baseline**: the broker's count may include
  drops from long ago, which an earlier maestro process may already have reported. It is
  logged once when it is not zero, and not counted. Mosquitto 2.0.11 keeps the count
  retained for only 60 s after it changed, so a maestro that starts later reads nothing
  until the count next changes: that first change is then the baseline (logged, not
  counted), and only the increases after it are counted.
- Readings are kept across reconnections of the link: drops while the link was down
  (the maestro's queue overflowing during an outage) are exactly the ones to report.
- A reading **below** the previous one means the broker restarted (the counter lives in
  its memory and starts again at 0). The new value is then counted in full: every one
  of those drops happened after that restart, so none of them was counted before. What
  the old broker dropped after our last reading is unknown, and a restarted broker that
  dropped more than the old count before we read it is seen as an increase from the old
  count: both under-count, neither counts a drop twice.

:class:`BrokerDrops` is the shell, on the event loop: it feeds readings to
:func:`observe`, logs, and flushes a held-back warning once its minute is over.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from arete.errors import PayloadError

log = logging.getLogger("arete.maestro.broker")

WARN_EVERY_S: Final = 60.0
FLUSH_CHECK_S: Final = 5.0
# Mosquitto prints an unsigned long; 20 digits hold any 64-bit value.
_COUNTER_RE: Final = re.compile(rb"[0-9]{1,20}")


def parse_counter(payload: bytes | bytearray) -> int:
    """The counter in a ``$SYS`` payload (ASCII decimal digits), else :class:`PayloadError`.

    Only plain digits: ``int()`` would also take ``-1``, ``+5``, ``1_000`` and non-ASCII
    digits, none of which Mosquitto writes.
    """
    text = bytes(payload).strip()
    if not _COUNTER_RE.fullmatch(text):
        raise PayloadError(
            f"the broker's dropped-message counter is not a number: {bytes(payload)[:40]!r}",
            code="not_a_counter",
        )
    return int(text)


@dataclass(frozen=True, slots=True)
class DropWatch:
    """What the maestro knows about the broker's dropped-message counter."""

    last: int | None = None  # the counter at the last reading; None before the first
    total: int = 0  # drops seen since this maestro started watching
    unreported: int = 0  # drops not yet in a warning
    warned_at: float | None = None  # when the last warning went out


@dataclass(frozen=True, slots=True)
class DropWarning:
    dropped: int  # since the previous warning
    total: int  # since this maestro started watching


def observe(
    watch: DropWatch, counter: int, now: float, *, every_s: float = WARN_EVERY_S
) -> tuple[DropWatch, DropWarning | None]:
    """A reading of the counter; the new state and the warning to log, if one is due."""
    if watch.last is None:
        return replace(watch, last=counter), None
    new = counter - watch.last if counter >= watch.last else counter  # lower: a restart
    watch = replace(watch, last=counter, total=watch.total + new, unreported=watch.unreported + new)
    return due(watch, now, every_s=every_s)


def due(
    watch: DropWatch, now: float, *, every_s: float = WARN_EVERY_S
) -> tuple[DropWatch, DropWarning | None]:
    """The warning for unreported drops once the last one is ``every_s`` old, if any."""
    if watch.unreported == 0:
        return watch, None
    if watch.warned_at is not None and now - watch.warned_at < every_s:
        return watch, None
    warning = DropWarning(dropped=watch.unreported, total=watch.total)
    return replace(watch, unreported=0, warned_at=now), warning


class BrokerDrops:
    """The shell around :func:`observe`, on the event loop. ``total`` is read by the
    Prometheus collector from its own thread (a plain int: reading it is atomic)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.watch = DropWatch()

    @property
    def total(self) -> int:
        return self.watch.total

    def on_reading(self, counter: int) -> None:
        first = self.watch.last is None
        self.watch, warning = observe(self.watch, counter, self._clock())
        if first and counter:
            log.warning(
                "the broker has dropped %d messages since it started; this is the maestro's "
                "first reading of that count, a baseline (not counted: only later increases "
                "are); some may have been samples meant for this maestro",
                counter,
                extra={"kv": {"broker_dropped": counter}},
            )
        self._log(warning)

    def flush(self) -> None:
        """Log drops held back by the once-a-minute limit, once the minute is over."""
        self.watch, warning = due(self.watch, self._clock())
        self._log(warning)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_CHECK_S)
            self.flush()

    @staticmethod
    def _log(warning: DropWarning | None) -> None:
        if warning is None:
            return
        log.warning(
            "the broker dropped %d messages for full client queues (%d since this maestro "
            "started); they may include samples this maestro never got, now lost. The "
            "maestro is falling behind or was down: add a maestro replica (see "
            "docs/maestro.md, 'Nothing lost')",
            warning.dropped,
            warning.total,
            extra={"kv": {"dropped": warning.dropped, "total": warning.total}},
        )
