"""Signed releases of Areté itself (pure: the CLI signs, the maestro stores and publishes,
the agent and its host updater verify; docs/updates.md).

A release is a :class:`ReleaseManifest` (the version, every wheel needed to install
``arete[agent]==version`` offline with its sha256 and size, the oldest version it may
update from, an expiry) signed with a *release* key, which is never the command-signing
key. The signed document is ``RELEASE_CONTEXT`` + the manifest as JSON with sorted keys,
no whitespace and float timestamps; ``release.json`` is ``{"manifest": {...}, "sig":
"<base64>"}``. Artifacts travel over the broker in chunks of ``RELEASE_CHUNK_BYTES``
(``<root>/release/<version>/chunk/<a>/<n>``) and :class:`ReleaseAssembly` puts them back
together.

``cryptography`` is imported inside the functions that need it (as agents without
signing never load it); the types below are only for the type checker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec

from arete.commands import VERSION_PATTERN, Version
from arete.errors import KeyFormatError, PayloadError, ReleaseRefused

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

RELEASE_CONTEXT: Final = b"arete-release-v1\n"
RELEASE_CHUNK_BYTES: Final = 256 * 1024
MAX_ARTIFACT_BYTES: Final = 512 * 1024 * 1024
MAX_ARTIFACTS: Final = 128
MAX_RELEASE_BYTES: Final = 128 * 1024
"""Bound on an encoded ``release.json`` (128 artifacts take about 40 KiB)."""

DEFAULT_PACKAGE: Final = "arete[agent]"

# A wheel file name (PEP 427): name-version[-build]-python-abi-platform.whl. No slash, no
# leading dot: the name becomes a file name in the agent's spool directory.
_WHEEL_NAME: Final = (
    r"^[A-Za-z0-9][A-Za-z0-9_.]*-[A-Za-z0-9_.!+]+(-[0-9][A-Za-z0-9_.]*)?"
    r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl\Z"
)
WheelName = Annotated[str, msgspec.Meta(pattern=_WHEEL_NAME, max_length=200)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}\Z")]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
Requirement = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(\[[A-Za-z0-9_.,-]+\])?\Z", max_length=100),
]


class ReleaseArtifact(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One wheel of a release."""

    name: WheelName
    sha256: Sha256
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_ARTIFACT_BYTES)]


class ReleaseManifest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the release key signs."""

    schema: Literal[1] = 1
    version: Version
    package: Requirement = DEFAULT_PACKAGE
    artifacts: Annotated[list[ReleaseArtifact], msgspec.Meta(min_length=1, max_length=128)]
    min_from_version: Version
    created_at: Timestamp
    expires_at: Timestamp
    key_id: KeyId


class SignedRelease(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The content of ``release.json`` and of the ``<root>/release/<v>/manifest`` topic."""

    manifest: ReleaseManifest
    sig: Annotated[str, msgspec.Meta(max_length=200)] = ""


_canonical = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(SignedRelease)


# -- versions -----------------------------------------------------------------------


_VERSION_RE: Final = re.compile(VERSION_PATTERN)


def parse_version(version: str) -> tuple[int, ...]:
    """``version`` as numbers without trailing zeros (``"1.0.0"`` -> ``(1,)``).

    Raises :class:`PayloadError` (code ``bad_version``) unless it matches
    :data:`arete.commands.VERSION_PATTERN` (1-4 dot-separated numbers).
    """
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise PayloadError(
            f"invalid version {version!r}: expected 1-4 dot-separated numbers",
            code="bad_version",
        )
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b`` (numerically:
    ``"0.10" > "0.9"``, ``"1.0" == "1.0.0"``)."""
    left, right = parse_version(a), parse_version(b)
    return (left > right) - (left < right)


# -- keys ---------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:16]


def keyring(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """The mapping :func:`verify_release` takes: each key under its :func:`key_id`."""
    return {key_id(key): key for key in keys}


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw 32 bytes (one line, what
    ``arete keys public`` and ``arete release key public`` print) or from PEM.

    Raises :class:`KeyFormatError` saying which form was expected.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            loaded = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise KeyFormatError(f"not a valid PEM public key: {exc}") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise KeyFormatError("not an Ed25519 public key")
        return loaded
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise KeyFormatError(
            "expected base64 of a raw 32-byte Ed25519 public key, or PEM"
        ) from None


def key_file_entries(where: str, text: str) -> list[tuple[str, str]]:
    """The keys of a key file as ``(where, text)`` pairs: a PEM file is one key; otherwise
    one base64 key a line, ``#`` starting a comment."""
    if "-----BEGIN" in text:
        return [(where, text)]
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.split("#", 1)[0].strip()
        if key:
            entries.append((f"{where} line {number}", key))
    return entries


def load_keyring(sources: Iterable[tuple[str, str]]) -> dict[str, Ed25519PublicKey]:
    """Public keys from ``(where, text)`` pairs, by key id (:func:`keyring`); a bad one
    raises :class:`KeyFormatError` starting with its ``where``."""
    keys = []
    for where, text in sources:
        try:
            keys.append(load_public_key(text))
        except KeyFormatError as exc:
            raise KeyFormatError(f"{where}: {exc}") from None
    return keyring(keys)


def configured_keyring(
    keys: Iterable[str], key_file: str | Path | None, *, keys_name: str, file_name: str
) -> dict[str, Ed25519PublicKey]:
    """The release keys a service's settings name: ``keys`` (one key each) plus the keys
    of ``key_file``; :class:`KeyFormatError` names the setting (and line) of a bad one, or
    says why the file cannot be read."""
    sources = [(f"{keys_name}[{i}]", text) for i, text in enumerate(keys)]
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFormatError(f"{file_name}: {exc}") from None
        sources += key_file_entries(f"{file_name} {path}", text)
    return load_keyring(sources)


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The one-line form of a public key: base64 of its raw 32 bytes."""
    return base64.b64encode(public_key.public_bytes_raw()).decode("ascii")


# -- signing ------------------------------------------------------------------------


def release_signing_bytes(manifest: ReleaseManifest) -> bytes:
    """``RELEASE_CONTEXT`` + the canonical JSON of ``manifest`` (what the key signs)."""
    document = msgspec.to_builtins(manifest)
    document["created_at"] = float(manifest.created_at)
    document["expires_at"] = float(manifest.expires_at)
    return RELEASE_CONTEXT + _canonical.encode(document)


def sign_release(manifest: ReleaseManifest, private_key: Ed25519PrivateKey) -> SignedRelease:
    """``manifest`` signed; its ``key_id`` must be the key's (else :class:`ValueError`)."""
    expected = key_id(private_key.public_key())
    if manifest.key_id != expected:
        raise ValueError(f"manifest key_id {manifest.key_id} is not the signing key's {expected}")
    signature = private_key.sign(release_signing_bytes(manifest))
    return SignedRelease(manifest=manifest, sig=base64.b64encode(signature).decode("ascii"))


def encode_release(release: SignedRelease) -> bytes:
    """``release.json``'s bytes (sorted keys, float timestamps)."""
    manifest = msgspec.to_builtins(release.manifest)
    manifest["created_at"] = float(release.manifest.created_at)
    manifest["expires_at"] = float(release.manifest.expires_at)
    return _canonical.encode({"manifest": manifest, "sig": release.sig})


def decode_release(raw: bytes) -> SignedRelease:
    """Parse ``release.json``; anything wrong is ``ReleaseRefused("bad_manifest")``."""
    if len(raw) > MAX_RELEASE_BYTES:
        raise ReleaseRefused(
            "bad_manifest", f"release is {len(raw)} bytes, more than {MAX_RELEASE_BYTES}"
        )
    try:
        release = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReleaseRefused("bad_manifest", f"release does not match its schema: {exc}") from None
    manifest = release.manifest
    if manifest.expires_at <= manifest.created_at:
        raise ReleaseRefused("bad_manifest", "release expires before it was created")
    names = [artifact.name for artifact in manifest.artifacts]
    if len(set(names)) != len(names):
        raise ReleaseRefused("bad_manifest", "release lists the same artifact twice")
    if compare_versions(manifest.min_from_version, manifest.version) > 0:
        raise ReleaseRefused("bad_manifest", "min_from_version is newer than the version")
    return release


def verify_release(
    raw: bytes,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    now: float,
    running_version: str,
) -> ReleaseManifest:
    """The manifest of ``raw`` (``release.json`` bytes) if it may be installed over
    ``running_version``; else :class:`ReleaseRefused` with, checked in this order,
    ``bad_manifest``, ``unsigned``, ``unknown_key``, ``bad_signature``, ``expired``,
    ``downgrade`` or ``too_old``. The same version is not refused (the caller answers
    ``up_to_date``). ``keys`` maps key ids to public keys (:func:`keyring`).
    """
    from cryptography.exceptions import InvalidSignature

    release = decode_release(raw)
    manifest = release.manifest
    if not release.sig:
        raise ReleaseRefused("unsigned", f"release {manifest.version} is not signed")
    key = keys.get(manifest.key_id)
    if key is None:
        raise ReleaseRefused(
            "unknown_key",
            f"release {manifest.version} is signed with key {manifest.key_id},"
            " which is not among the trusted release keys",
        )
    try:
        signature = base64.b64decode(release.sig, validate=True)
        key.verify(signature, release_signing_bytes(manifest))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ReleaseRefused(
            "bad_signature", f"release {manifest.version}: the signature does not verify"
        ) from None
    if now > manifest.expires_at:
        raise ReleaseRefused(
            "expired", f"release {manifest.version} expired at {manifest.expires_at:.0f}"
        )
    if compare_versions(manifest.version, running_version) < 0:
        raise ReleaseRefused(
            "downgrade", f"release {manifest.version} is older than the running {running_version}"
        )
    if compare_versions(running_version, manifest.min_from_version) < 0:
        raise ReleaseRefused(
            "too_old",
            f"release {manifest.version} updates from {manifest.min_from_version} or newer;"
            f" this is {running_version}",
        )
    return manifest


# -- artifacts and chunks -----------------------------------------------------------


def check_artifact(artifact: ReleaseArtifact, data: bytes) -> None:
    """Raise ``ReleaseRefused("tampered")`` unless ``data`` has the artifact's size and
    sha256."""
    if len(data) != artifact.size:
        raise ReleaseRefused(
            "tampered", f"{artifact.name} is {len(data)} bytes, the release says {artifact.size}"
        )
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ReleaseRefused("tampered", f"{artifact.name} does not match its sha256")


def chunk_count(size: int) -> int:
    """How many chunks an artifact of ``size`` bytes travels in (0 for an empty one: an
    empty retained message would delete the topic)."""
    return -(-size // RELEASE_CHUNK_BYTES)


def chunk_span(size: int, index: int) -> tuple[int, int]:
    """``(start, end)`` byte offsets of chunk ``index`` of an artifact of ``size`` bytes."""
    if not 0 <= index < chunk_count(size):
        raise IndexError(f"chunk {index} out of range for {size} bytes")
    start = index * RELEASE_CHUNK_BYTES
    return start, min(size, start + RELEASE_CHUNK_BYTES)


class ReleaseAssembly:
    """Puts a release's artifacts back together from chunks arriving in any order,
    any number of times (retained QoS 1 messages may come twice)."""

    def __init__(self, manifest: ReleaseManifest) -> None:
        self.manifest = manifest
        self._chunks: list[dict[int, bytes]] = [{} for _ in manifest.artifacts]

    def feed(self, artifact_index: int, chunk_index: int, payload: bytes) -> bool:
        """Keep one chunk; False (and nothing kept) when it does not belong to the
        release: artifact or chunk out of range, or not the size it must have."""
        if not 0 <= artifact_index < len(self.manifest.artifacts):
            return False
        size = self.manifest.artifacts[artifact_index].size
        if not 0 <= chunk_index < chunk_count(size):
            return False
        start, end = chunk_span(size, chunk_index)
        if len(payload) != end - start:
            return False
        self._chunks[artifact_index][chunk_index] = bytes(payload)
        return True

    def missing(self) -> list[tuple[int, int]]:
        """``(artifact, chunk)`` pairs not received yet, in order."""
        return [
            (a, n)
            for a, artifact in enumerate(self.manifest.artifacts)
            for n in range(chunk_count(artifact.size))
            if n not in self._chunks[a]
        ]

    def complete(self) -> bool:
        return all(
            len(chunks) == chunk_count(artifact.size)
            for chunks, artifact in zip(self._chunks, self.manifest.artifacts, strict=True)
        )

    @property
    def received_bytes(self) -> int:
        return sum(len(chunk) for chunks in self._chunks for chunk in chunks.values())

    def artifact_bytes(self, index: int) -> bytes:
        """Artifact ``index`` in full, checked against its size and sha256: raises
        ``ReleaseRefused("fetch_failed")`` while chunks are missing, ``"tampered"`` when
        they do not add up to the artifact."""
        artifact = self.manifest.artifacts[index]
        chunks = self._chunks[index]
        count = chunk_count(artifact.size)
        if len(chunks) != count:
            raise ReleaseRefused(
                "fetch_failed", f"{artifact.name}: {count - len(chunks)} of {count} chunks missing"
            )
        data = b"".join(chunks[n] for n in range(count))
        check_artifact(artifact, data)
        return data
