"""End-to-end delivery of samples: what was sent and not yet confirmed stored, and when
to send it again. Pure state (no I/O but the one flag file of :class:`AckMode`); the
agent's shell (:mod:`edge_agent.agent`) feeds it events and does the sending.

A sample is *confirmed* once the maestro says it stored it (``stored/<agent_id>``,
:class:`arete.stored.Stored`); the broker's PUBACK is not enough, because a broker
restart can drop what it acknowledged. Until then the agent keeps the sample — in
memory for a live sample, in its disk outbox otherwise — and sends everything not yet
confirmed again:

- after every reconnect of its own, what the broker had not acknowledged (PUBACK) when
  the link dropped; what it had acknowledged may well be stored already (its
  confirmation lost with the link, or still merged in the maestro), and a second copy
  could go to another replica and be stored twice, so it waits for the next two
  occasions or the timeout;
- :data:`RESEND_GRACE_S` after a maestro replica announces a new ``online``, if a sample
  sent before that is still unconfirmed (the maestro subscribes first, then announces:
  after a broker restart, what the broker took before then may be gone; what reached
  the maestro is confirmed by then, and is not sent again to another replica);
- when the oldest unconfirmed sample waited :data:`ACK_TIMEOUT_S` (doubling up to
  :data:`ACK_TIMEOUT_MAX_S` while nothing at all is confirmed), unless every known
  replica is offline (what it has not read waits in its broker session; its next
  ``online`` triggers the re-send).

A replica stores each (agent, seq) once, so a re-sent sample is never stored twice by
one replica; the rules above keep re-sends from reaching a second replica after broker
and maestro restarts (docs/topics.md says when one still can).

An agent that has never received a stored acknowledgement counts the PUBACK as
confirmation, as before: with no maestro, or one too old to confirm, nobody ever would,
and waiting for it would fill the outbox and starve the live samples. The first
acknowledgement switches that off for good (:class:`AckMode` keeps it in a file).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from arete.payloads import MaestroState, MaestroStatus
from edge_agent.state import OutboxRow

ACK_TIMEOUT_S: Final = 10.0
ACK_TIMEOUT_MAX_S: Final = 300.0
MAX_HELD: Final = 100_000  # PUBACKed samples remembered across a reconnect, at most
ACK_MODE_FILE: Final = "maestro-acks"
RESEND_GRACE_S: Final = 3.0


@dataclass(slots=True)
class Batch:
    """One replay message from the outbox, until all its samples are confirmed."""

    seqs: set[int]
    sent_at: float


@dataclass(slots=True)
class Unconfirmed:
    """Samples sent and not yet confirmed, and when to send them again."""

    timeout_s: float = ACK_TIMEOUT_S
    max_timeout_s: float = ACK_TIMEOUT_MAX_S
    live: dict[int, tuple[OutboxRow, float]] = field(default_factory=dict)  # seq -> row, sent
    batches: list[Batch] = field(default_factory=list)
    misses: int = 0  # re-sends in a row that nothing was confirmed between
    # seq -> sent at, of samples the broker acknowledged (PUBACK) and the maestro did not
    # confirm yet: kept back at a reconnect, sent again only on a later occasion.
    broker_has: dict[int, float] = field(default_factory=dict)

    @property
    def live_count(self) -> int:
        return len(self.live)

    @property
    def replay_count(self) -> int:
        return len(self.batches)

    def __bool__(self) -> bool:
        return bool(self.live or self.batches)

    def sent_live(self, row: OutboxRow, now: float) -> None:
        self.live[row.seq] = (row, now)

    def sent_batch(self, seqs: Iterable[int], now: float) -> Batch:
        batch = Batch(set(seqs), now)
        self.batches.append(batch)
        return batch

    def puback(self, seqs: Iterable[int], sent_at: float) -> None:
        """The broker acknowledged these samples (the maestro has yet to confirm them)."""
        if len(self.broker_has) >= MAX_HELD:
            return  # past the bound, a lost link sends them again: duplicates, not losses
        for seq in seqs:
            if seq in self.live or any(seq in batch.seqs for batch in self.batches):
                self.broker_has[seq] = sent_at  # (not if its confirmation came first)

    def held_back(self, seq: int) -> bool:
        """Whether a sample in the outbox waits for its confirmation rather than a re-send."""
        return seq in self.broker_has

    def confirm(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget the samples in these ``(first, last)`` ranges; how many were pending."""
        done = held = 0
        for first, last in ranges:
            held += _drop_range(self.broker_has, first, last)
            done += _drop_range(self.live, first, last)
            for batch in self.batches:
                before = len(batch.seqs)
                if last - first < before:
                    batch.seqs.difference_update(range(first, last + 1))
                else:
                    batch.seqs = {s for s in batch.seqs if not first <= s <= last}
                done += before - len(batch.seqs)
        if done or held:
            self.batches = [batch for batch in self.batches if batch.seqs]
            self.misses = 0
        return done

    def confirm_live(self, seq: int) -> None:
        """The broker's PUBACK confirms a live sample (no maestro to wait for)."""
        self.live.pop(seq, None)

    def confirm_batch(self, batch: Batch) -> None:
        """The broker's PUBACK confirms a replay batch (no maestro to wait for)."""
        with contextlib.suppress(ValueError):
            self.batches.remove(batch)

    @property
    def current_timeout_s(self) -> float:
        return min(self.max_timeout_s, self.timeout_s * 2.0**self.misses)

    def oldest_sent(self) -> float:
        times = [sent for _, sent in self.live.values()]
        times += [batch.sent_at for batch in self.batches]
        if self.broker_has:
            times.append(min(self.broker_has.values()))
        return float(min(times, default=math.inf))

    def due(self, now: float) -> bool:
        """Whether the oldest unconfirmed sample has waited long enough to send again."""
        return now - self.oldest_sent() >= self.current_timeout_s

    def take_all(self, *, timed_out: bool = False, link_lost: bool = False) -> list[OutboxRow]:
        """Everything is to be sent again: the live rows (for the outbox), in seq order.

        Replay batches are simply forgotten: their samples are still in the outbox.
        ``timed_out`` lengthens the next timeout while nothing gets confirmed; after a
        ``link_lost`` what the broker acknowledged stays held back (see :attr:`broker_has`).
        """
        if not link_lost:
            self.broker_has.clear()
        rows = [row for row, _ in sorted(self.live.values(), key=lambda item: item[0].seq)]
        self.live.clear()
        self.batches.clear()
        if timed_out:
            self.misses += 1
        return rows


def _drop_range(by_seq: dict[int, Any], first: int, last: int) -> int:
    """Remove the keys in ``first..last``; how many there were (cheap for huge ranges)."""
    if not by_seq:
        return 0
    if last - first < len(by_seq):
        hits = [seq for seq in range(first, last + 1) if seq in by_seq]
    else:
        hits = [seq for seq in by_seq if first <= seq <= last]
    for seq in hits:
        del by_seq[seq]
    return len(hits)


@dataclass(slots=True)
class HubWatch:
    """The maestro replicas' retained states, as the agent sees them on ``maestro/+``."""

    online: dict[str, float] = field(default_factory=dict)  # replica -> ts of its online
    offline: set[str] = field(default_factory=set)
    recheck: tuple[float, float] | None = None  # (a new online seen at, look again at)

    def on_status(self, replica: str, status: MaestroStatus, now: float) -> bool:
        """Record a status; True when it is a *new* ``online`` (look again in a moment).

        The broker hands the same retained status again at every reconnect: one already
        seen (same ``ts``) is no news.
        """
        if status.state is MaestroState.ONLINE:
            self.offline.discard(replica)
            if self.online.get(replica) == status.ts:
                return False
            self.online[replica] = status.ts
            seen_at = now if self.recheck is None else self.recheck[0]
            self.recheck = (seen_at, now + RESEND_GRACE_S)
            return True
        self.offline.add(replica)
        return False

    def recheck_due(self, now: float) -> float | None:
        """When the last new ``online`` was seen, once it is time to look again."""
        if self.recheck is None or now < self.recheck[1]:
            return None
        seen_at, self.recheck = self.recheck[0], None
        return seen_at

    @property
    def all_offline(self) -> bool:
        """Every replica heard of said ``offline`` last (False when none was heard of)."""
        return bool(self.offline) and not (set(self.online) - self.offline)


class AckMode:
    """Whether to wait for the maestro's stored acknowledgement (on since the first one
    arrived); remembered on disk."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ACK_MODE_FILE
        self.on = self.path.exists()

    def maestro_seen(self) -> bool:
        """Switch on (a maestro confirms); True if it was off until now."""
        if self.on:
            return False
        self.on = True
        with contextlib.suppress(OSError):  # a full disk: on for this run at least
            self.path.write_text("a maestro confirms stored samples\n")
        return True
