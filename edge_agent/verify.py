"""Ed25519 verification of command signatures (the maestro signs)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.errors import ConfigError
from edge_agent.gate import Verify
from edge_agent.settings import CommandSettings


def load_verifier(settings: CommandSettings) -> Verify | None:
    """A verify function for the configured public key, or None when signing is off."""
    if settings.public_key is None and settings.public_key_file is None:
        return None
    # Imported here: agents without signing never load the crypto library.
    from cryptography.exceptions import InvalidSignature

    from arete.errors import KeyFormatError
    from arete.release import load_public_key

    if settings.public_key_file is not None:
        try:
            text = Path(settings.public_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"commands.public_key_file: {exc}") from None
    else:
        text = (settings.public_key or "").strip()
    try:
        key = load_public_key(text)
    except KeyFormatError as exc:
        raise ConfigError(f"commands public key: {exc}") from None

    def verify(signature: bytes, data: bytes) -> bool:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return verify
