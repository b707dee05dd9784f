"""The maestro's end-to-end acknowledgement: which of one agent's samples it has stored.

A broker's PUBACK only means the broker has a message; a broker restart can still lose
it (Mosquitto does not restore shared subscriptions from its persistence file, so what
agents publish before the maestro subscribes again is acknowledged and dropped). So the
maestro, once a metrics message is committed to its store, publishes a :class:`Stored`
on ``stored/<agent_id>`` naming the samples' ``seq`` numbers as ranges, and the agent
forgets a sample only then. See docs/topics.md, "Durability: the stored acknowledgement".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final

import msgspec

from arete.errors import PayloadError
from arete.payloads import SCHEMA, decode

MAX_STORED_BYTES: Final = 64 * 1024
MAX_SEQ: Final = 2**53 - 1  # exact in every JSON reader (arete.payloads bounds seq alike)
MAX_TS: Final = 4_102_444_800.0  # 2100-01-01: no clock reads more
MAX_RANGES: Final = 1000

Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
SeqRange = tuple[Seq, Seq]
"""``(first, last)``, both included."""


class Stored(msgspec.Struct, kw_only=True, frozen=True):
    """On ``stored/<id>``, from the maestro replica that stored the samples (QoS 0)."""

    schema: int = SCHEMA
    replica: Annotated[str, msgspec.Meta(max_length=256)]
    ts: Annotated[float, msgspec.Meta(ge=0, le=MAX_TS)]  # the maestro's clock at publishing
    ranges: Annotated[list[SeqRange], msgspec.Meta(min_length=1, max_length=MAX_RANGES)]


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged ``(first, last)`` ranges covering exactly ``seqs``."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def decode_stored(data: bytes | bytearray | memoryview) -> Stored:
    """Decode and validate a :class:`Stored`; every range must have ``first <= last``."""
    stored = decode(data, Stored, max_bytes=MAX_STORED_BYTES)
    for first, last in stored.ranges:
        if first > last:
            message = f"invalid Stored: range [{first}, {last}] is reversed"
            raise PayloadError(message, code="schema")
    return stored


class _SeqOnly(msgspec.Struct):
    seq: int


class _SeqsOnly(msgspec.Struct):
    samples: list[_SeqOnly]


def salvage_seqs(data: bytes | bytearray | memoryview, *, max_bytes: int) -> list[int]:
    """The sample ``seq`` numbers of a metrics message that failed to decode, if readable.

    The maestro acknowledges them as handled (dropped, and counted), so that the agent
    does not send a message that can never be stored again and again. Empty when the
    message is too malformed to name its samples.
    """
    if len(data) > max_bytes:
        return []
    try:
        found = msgspec.json.decode(data, type=_SeqsOnly)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return []
    return [s.seq for s in found.samples if 0 <= s.seq <= MAX_SEQ]
