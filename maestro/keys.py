"""The maestro's command-signing key pair (Ed25519).

The private key lives in ``<data dir>/secrets/maestro-signing.key`` (PEM, PKCS#8, mode
0600 in a 0700 directory); the public key in ``<data dir>/maestro-signing.pub`` as the
base64 of its raw 32 bytes, the form an agent's ``commands.public_key`` setting takes
(one line: fits a TOML string and an environment variable).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from maestro.errors import ConfigError
from maestro.secrets import permission_problem

if TYPE_CHECKING:
    from maestro.settings import MaestroSettings

PRIVATE_KEY_NAME: Final = "maestro-signing.key"
PUBLIC_KEY_NAME: Final = "maestro-signing.pub"
SECRETS_DIR: Final = "secrets"
MAX_KEY_FILE_BYTES: Final = 16 * 1024
_PRIVATE_DIR_MODE: Final = 0o700
_PRIVATE_FILE_MODE: Final = 0o600
_PUBLIC_FILE_MODE: Final = 0o644


@dataclass(frozen=True, slots=True)
class KeyPaths:
    private: Path
    public: Path


def key_paths(data_dir: Path) -> KeyPaths:
    data_dir = Path(data_dir)
    return KeyPaths(data_dir / SECRETS_DIR / PRIVATE_KEY_NAME, data_dir / PUBLIC_KEY_NAME)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The agent-side form of the public key: base64 of its raw 32 bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes_raw()).decode("ascii")


def create_keys(data_dir: Path, *, force: bool = False) -> KeyPaths:
    """Make a new key pair under ``data_dir``; refuse to replace one unless ``force``.

    The private key file is created 0600 under a temporary name in its 0700 directory,
    synced, then linked (or, with ``force``, renamed) into place: it is never readable
    by anyone else, never half-written, and an existing key is never overwritten by
    accident, even by two runs at once.
    """
    paths = key_paths(data_dir)
    if not force and paths.private.exists():
        raise ConfigError(
            f"a signing key already exists at {paths.private}; agents trust its public key."
            " Use --force to replace it (then give every agent the new public key)"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _private_dir(paths.private.parent)
    _write_atomically(paths.private, pem, _PRIVATE_FILE_MODE, replace=force)
    _write_atomically(
        paths.public, (public_key_text(key) + "\n").encode(), _PUBLIC_FILE_MODE, replace=True
    )
    return paths


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the private key at ``path``; a :class:`ConfigError` says what is wrong."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"signing key {path} does not exist; create one with"
            " `arete keys create --data-dir DATA_DIR`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"signing key {path} is not a regular file")
    if permission_problem(path, info, "signing key") is not None:
        raise ConfigError(
            f"signing key {path} is open to group or others (mode"
            f" {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"signing key {path} is too large to be a key ({info.st_size} bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror}") from None
    return parse_signing_key(data, f"signing key {path}")


def parse_signing_key(data: bytes, where: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM ``data``; ``where`` names it in errors."""
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{where} is encrypted; the maestro needs it unencrypted (mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{where} is not a PEM private key (expected what `arete keys create` or"
            " `arete keys generate --stdout` writes)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where} is not an Ed25519 key")
    return key


def new_private_key_pem() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM, never written anywhere by this function."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def read_public_key(data_dir: Path) -> str:
    """The public key to give agents: derived from the private key when there is one."""
    paths = key_paths(data_dir)
    if paths.private.exists():
        return public_key_text(load_signing_key(paths.private))
    try:
        text = paths.public.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no signing key in {data_dir}; create one with"
            f" `arete keys create --data-dir {data_dir}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {paths.public}: {exc}") from None
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{paths.public} does not hold a base64 Ed25519 public key; recreate the pair"
            " with `arete keys create --force`"
        ) from None
    return text


def _private_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR_MODE)
        if directory.stat().st_mode & 0o077:
            directory.chmod(_PRIVATE_DIR_MODE)
    except FileExistsError:
        raise ConfigError(f"{directory} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot prepare {directory}: {exc.strerror}") from None


def _write_atomically(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp made it 0600 already
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            tmp.replace(path)
        else:
            os.link(tmp, path)  # fails if the target appeared meanwhile: never overwrites
        _sync_dir(path.parent)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; use --force to replace it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def configured_signing_key(settings: MaestroSettings) -> Ed25519PrivateKey | None:
    """The maestro's signing key: ``signing_key_pem`` (environment, Infisical), else the
    file (``signing_key_file`` or the data dir's), else None (commands go unsigned)."""
    if settings.signing_key_pem is not None:
        pem = settings.signing_key_pem.get_secret_value().strip() + "\n"
        if "\n" not in pem.strip() and "\\n" in pem:  # one line, as an env file holds it
            pem = pem.replace("\\n", "\n")
        return parse_signing_key(pem.encode("utf-8"), "signing_key_pem")
    path = settings.signing_key
    return None if path is None else load_signing_key(path)
