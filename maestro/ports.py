"""What the maestro's services need from the MQTT link, as a protocol.

The command service and the alert service publish through this, so their tests can
use a fake and the real :class:`maestro.link.MaestroLink` is the one implementation.
"""

from __future__ import annotations

from typing import Protocol


class Publisher(Protocol):
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Publish and return once the broker took it (PUBACK for QoS 1).

        Waits for the link when it is down. Raises :class:`maestro.errors.LinkError`
        when the broker refuses the message (e.g. not authorised).
        """
        ...
