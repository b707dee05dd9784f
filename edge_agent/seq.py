"""Sample sequence numbers that survive crashes without a write per sample.

:class:`~edge_agent.state.AgentState` stores a :class:`SeqBlock` once per
:data:`SEQ_BLOCK` numbers; :func:`resume_after` says where a restart continues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

SEQ_BLOCK: Final = 600  # seq numbers reserved per write (10 minutes at 1 Hz)


@dataclass(frozen=True, slots=True)
class SeqBlock:
    """What is stored about the sequence: enough to never hand a number out twice.

    ``limit`` is the highest number that may have been handed out. While running it is
    the end of the reserved block; a clean close stores the last number and ``at_ms=0``,
    so a clean restart continues without a gap. After a crash the agent continues past
    ``limit`` (a gap of at most :data:`SEQ_BLOCK` numbers that were never used), and
    past what the wall time since the reservation could have numbered, in case the block
    ran out while the disk was full and no new one could be written.
    """

    limit: int
    base: int = 0  # the last number handed out when the block was reserved
    at_ms: int = 0  # wall clock of the reservation; 0 after a clean close
    interval_ms: int = 1000  # the sampling interval then (at most one number each)


def resume_after(block: SeqBlock, now_ms: int) -> int:
    """The last number that may have been used before this start (continue after it)."""
    if block.at_ms <= 0:
        return block.limit
    elapsed = max(0, now_ms - block.at_ms)
    # The sample loop never bursts: one number per interval, plus one catching up.
    by_time = block.base + math.ceil(elapsed / max(1, block.interval_ms)) + 2
    return max(block.limit, by_time)
