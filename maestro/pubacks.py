"""PUBACKs of one store batch written together.

The maestro acknowledges a metrics message to the broker only once the store committed
it, from the writer thread (:mod:`maestro.ingest`). paho's ``ack()`` queues one packet a
call, and every queued packet wakes the network thread through its socket pair and is
written with a ``send()`` of its own: at 5,000 messages a second that is 10,000 system
calls a second and a wake each, on the process that holds the GIL for the ingest.

:func:`queue_pubacks` queues the PUBACKs of a whole batch as ONE write: MQTT packets are
a byte stream, so N 4-byte PUBACKs (MQTT 5 lets a success PUBACK omit its reason code
and properties, as paho's own do) back to back are what N separate writes would have
put on the wire. It uses paho's ``_packet_queue`` (a private method, present in the
pinned paho 2.x); without it, it falls back to one ``ack()`` each.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt

PUBACK: Final = 0x40
_PUBACK: Final = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id


def encode_pubacks(mids: Sequence[int]) -> bytes:
    """The wire bytes of a success PUBACK for each packet id, in order."""
    return b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids)


def queue_pubacks(client: mqtt.Client, mids: Sequence[int]) -> None:
    """Acknowledge QoS 1 messages ``mids`` (manual acks) with one queued write."""
    if not mids:
        return
    queue: Callable[..., Any] | None = getattr(client, "_packet_queue", None)
    if queue is None or len(mids) == 1:
        for mid in mids:
            client.ack(mid, 1)
        return
    queue(PUBACK, encode_pubacks(mids), 0, 0)
