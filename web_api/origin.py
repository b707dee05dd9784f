"""Which ``Origin`` may talk to the API with a browser's credentials."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def origin_allowed(
    origin: str | None,
    host: str | None,
    allowed: Iterable[str],
    *,
    missing_ok: bool,
) -> bool:
    """True if ``origin`` is listed in ``allowed`` or names the server itself (``host``).

    A request without Origin comes from a script, not a page: ``missing_ok`` says
    whether that is fine (it still needs a token or session).
    """
    if origin is None or origin == "":
        return missing_ok
    if origin == "null":
        return False
    wanted = origin.rstrip("/").lower()
    if wanted in {a.rstrip("/").lower() for a in allowed}:
        return True
    if not host:
        return False
    parts = urlsplit(wanted)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc == host.lower()
