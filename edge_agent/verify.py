"""Ed25519 verification of command signatures (the maestro signs)."""

from __future__ import annotations

import base64
import binascii
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
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if settings.public_key_file is not None:
        try:
            text = Path(settings.public_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"commands.public_key_file: {exc}") from None
    else:
        text = (settings.public_key or "").strip()
    key: Ed25519PublicKey
    if text.startswith("-----BEGIN"):
        try:
            loaded = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ConfigError(f"commands public key: not a valid PEM key: {exc}") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise ConfigError("commands public key: not an Ed25519 key")
        key = loaded
    else:
        try:
            raw = base64.b64decode(text, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            raise ConfigError(
                "commands public key: expected base64 of a raw 32-byte Ed25519 key or PEM"
            ) from None

    def verify(signature: bytes, data: bytes) -> bool:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return verify
