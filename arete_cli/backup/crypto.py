"""The encrypted container of a backup archive: a header and AES-256-GCM chunks.

::

    header   MAGIC (8) | version (1) | chunk size (4) | salt (16) | key id (8)
    chunks   length (4, big-endian) | AES-256-GCM ciphertext and tag, repeated

Each archive encrypts with its own key, derived from the backup key and the header's
random salt (HKDF-SHA256), so the chunk nonces can simply count: nonce = chunk number
(11 bytes) + a last-chunk flag (1 byte). The whole header is the associated data of
every chunk. A chunk that was changed, dropped, moved or swapped fails authentication,
and so does an archive cut short (its last chunk was not sealed as the last) or with
bytes appended (the real last chunk no longer is). The key id (a one-way digest of the
backup key) tells a wrong key apart from a damaged archive.

No I/O of its own: the writer and reader wrap binary file objects.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from arete_cli.backup.errors import ArchiveError, BackupKeyError, WrongKeyError

MAGIC: Final = b"ARETEBK\x00"
FORMAT_VERSION: Final = 1
KEY_BYTES: Final = 32
SALT_BYTES: Final = 16
KEY_ID_BYTES: Final = 8
TAG_BYTES: Final = 16
CHUNK_BYTES: Final = 1024 * 1024
MIN_CHUNK_BYTES: Final = 16
MAX_CHUNK_BYTES: Final = 16 * 1024 * 1024
_HEADER: Final = struct.Struct(f">{len(MAGIC)}sBI{SALT_BYTES}s{KEY_ID_BYTES}s")
_LENGTH: Final = struct.Struct(">I")
HEADER_BYTES: Final = _HEADER.size


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_text(key: bytes) -> str:
    """The one-line form of a key, as key files and ``ARETE_BACKUP_KEY`` hold it."""
    return base64.b64encode(key).decode("ascii")


def parse_key(text: str | bytes, where: str) -> bytes:
    """A key from its text form (base64 of 32 bytes, surrounding whitespace allowed)."""
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode("ascii", "replace")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise BackupKeyError(
            f"the backup key in {where} is not a key made by 'arete backup key' "
            f"(expected the base64 of {KEY_BYTES} bytes)"
        )
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key (hex); it reveals nothing usable about the key."""
    return _derive(key, KEY_ID_BYTES, None, b"arete-backup key id").hex()


def _derive(key: bytes, length: int, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """Buffers plaintext and writes sealed chunks to ``out``; :meth:`close` seals the last."""

    def __init__(self, out: BinaryIO, key: bytes, chunk_bytes: int = CHUNK_BYTES) -> None:
        if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk size {chunk_bytes} out of range")
        salt = os.urandom(SALT_BYTES)
        self._header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, chunk_bytes, salt, bytes.fromhex(key_id(key))
        )
        self._aead = AESGCM(_derive(key, KEY_BYTES, salt, b"arete-backup v1 data"))
        self._out = out
        self._chunk = chunk_bytes
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed archive")
        self._buffer += data
        while len(self._buffer) >= self._chunk:
            self._seal(bytes(self._buffer[: self._chunk]), last=False)
            del self._buffer[: self._chunk]
        return len(data)

    def close(self) -> None:
        """Seal what is buffered as the last chunk (possibly empty). Idempotent."""
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _seal(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, last), plain, self._header)
        self._out.write(_LENGTH.pack(len(sealed)))
        self._out.write(sealed)
        self._counter += 1


class DecryptingReader:
    """Reads the plaintext of an archive from ``source``; every byte it returns is
    authenticated. :meth:`finish` checks that the archive ended where its writer ended it.
    """

    def __init__(self, source: BinaryIO, key: bytes) -> None:
        self._source = source
        header = source.read(HEADER_BYTES)
        if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
            raise ArchiveError("it is not an Areté backup archive (no backup header)")
        if len(header) == len(MAGIC):
            raise ArchiveError("it is truncated (the header is cut short)")
        if header[len(MAGIC)] != FORMAT_VERSION:
            raise ArchiveError(
                f"it is in backup format {header[len(MAGIC)]}; this arete reads format "
                f"{FORMAT_VERSION} (restore it with the arete version that made it)"
            )
        if len(header) < HEADER_BYTES:
            raise ArchiveError("it is truncated (the header is cut short)")
        _, _, chunk, salt, stored_id = _HEADER.unpack(header)
        if not MIN_CHUNK_BYTES <= chunk <= MAX_CHUNK_BYTES:
            raise ArchiveError("it is damaged (impossible chunk size in the header)")
        if stored_id.hex() != key_id(key):
            raise WrongKeyError(
                f"wrong backup key: the archive was made with key id {stored_id.hex()}, "
                f"the key given has id {key_id(key)}"
            )
        self._header = header
        self._max_sealed = chunk + TAG_BYTES
        self._aead = AESGCM(_derive(key, KEY_BYTES, salt, b"arete-backup v1 data"))
        self._counter = 0
        self._plain = b""
        self._offset = 0
        self._ended = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer (or none) only at the end of the archive."""
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            if self._offset >= len(self._plain):
                if self._ended:
                    break
                self._next_chunk()
                continue
            piece = self._plain[self._offset : self._offset + wanted]
            self._offset += len(piece)
            wanted -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def read_exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise ArchiveError("it is damaged (its contents end in the middle of an entry)")
        return data

    def finish(self) -> None:
        """The archive must hold nothing more than what was read."""
        if self.read(1):
            raise ArchiveError("it is damaged (unexpected data after its manifest)")

    def _next_chunk(self) -> None:
        prefix = self._source.read(_LENGTH.size)
        if len(prefix) < _LENGTH.size:
            raise ArchiveError("it is truncated (it ends before its last chunk)")
        (length,) = _LENGTH.unpack(prefix)
        if not TAG_BYTES <= length <= self._max_sealed:
            raise ArchiveError(f"it is damaged (chunk {self._counter} has an impossible length)")
        sealed = self._source.read(length)
        if len(sealed) < length:
            raise ArchiveError("it is truncated (its last chunk is cut short)")
        last = self._at_end()
        try:
            plain = self._aead.decrypt(_nonce(self._counter, last), sealed, self._header)
        except InvalidTag:
            raise ArchiveError(
                f"it is damaged or truncated (chunk {self._counter} fails authentication)"
            ) from None
        self._counter += 1
        self._plain, self._offset, self._ended = plain, 0, last

    def _at_end(self) -> bool:
        position = self._source.tell()
        more = self._source.read(1)
        self._source.seek(position)
        return not more
