"""The release store: ``<data dir>/releases/<version>/`` holding ``release.json`` and the
wheels it lists (docs/updates.md).

:class:`ReleaseStore` reads the directory, verifies every release with the configured
release public keys (signature, expiry, every wheel's size and sha256) and says which
releases may be published; :mod:`maestro.release_publisher` puts them on the broker.
Nothing here talks to the broker. A release that fails verification is logged, counted
and never published.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field

from arete.errors import KeyFormatError, ReleaseRefused
from arete.release import (
    MAX_RELEASE_BYTES,
    ReleaseManifest,
    compare_versions,
    configured_keyring,
    decode_release,
    parse_version,
    verify_release,
)
from maestro.errors import ConfigError, ReleaseError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("arete.maestro.releases")

RELEASE_FILE: Final = "release.json"
STORE_DIR: Final = "releases"
_READ_BYTES: Final = 1024 * 1024


class ReleaseSettings(BaseModel):
    """``[releases]`` of the maestro's settings (``ARETE_MAESTRO_RELEASES__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_keys: list[str] = Field(
        default_factory=list,
        description="Release public keys (base64 of the raw 32 bytes, or PEM) whose"
        " releases are published. None: the store is not published.",
    )
    public_key_file: Path | None = Field(
        None, description="A file holding one more release public key."
    )
    directory: Path | None = Field(None, description="Default: <data dir>/releases.")
    scan_interval_s: float = Field(60.0, ge=1, le=86_400)

    def keys(self) -> dict[str, Ed25519PublicKey]:
        """The configured keys by key id; :class:`ConfigError` names a bad one."""
        try:
            return configured_keyring(
                self.public_keys,
                self.public_key_file,
                keys_name="releases.public_keys",
                file_name="releases.public_key_file",
            )
        except KeyFormatError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """One verified release of the store, as the API and the auto-update watcher see it."""

    version: str
    created_at: float
    expires_at: float
    min_from_version: str
    key_id: str
    artifacts: int
    bytes: int
    published: bool


@dataclass(frozen=True, slots=True)
class RefusedRelease:
    """A directory of the store that is not published, and why (``code``: a
    :class:`~arete.errors.ReleaseRefused` code, or ``unreadable``)."""

    name: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class LocalRelease:
    """A verified release on disk: what the publisher publishes."""

    directory: Path
    raw: bytes
    manifest: ReleaseManifest

    def artifact_path(self, index: int) -> Path:
        return self.directory / self.manifest.artifacts[index].name


# (size, mtime_ns, inode) of a file whose sha256 was computed: hashed again only if changed.
_FileKey = tuple[int, int, int]


class ReleaseStore:
    """Verifies the releases of one directory; thread-safe (the publisher's thread scans,
    the API reads)."""

    def __init__(
        self,
        directory: Path,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.keys = dict(keys)
        self.clock = clock
        self.refused_total: Counter[str] = Counter()  # by code, counted on each change
        self._lock = threading.Lock()
        self._valid: dict[str, LocalRelease] = {}
        self._refused: dict[str, RefusedRelease] = {}
        self._published: set[str] = set()
        self._hashes: dict[Path, tuple[_FileKey, str]] = {}

    # -- reading the directory -------------------------------------------------------
    def scan(self) -> dict[str, LocalRelease]:
        """Read and verify every release now; the valid ones by version."""
        valid: dict[str, LocalRelease] = {}
        refused: dict[str, RefusedRelease] = {}
        try:
            entries = sorted(self.directory.iterdir())
        except FileNotFoundError:
            entries = []
        except OSError as exc:
            log.error("cannot read the release store %s: %s", self.directory, exc.strerror)
            entries = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue  # an `arete release add` in progress, or a stray file
            try:
                release = self.check(entry)
            except ReleaseRefused as exc:
                refused[entry.name] = RefusedRelease(entry.name, exc.code, str(exc))
            else:
                valid[release.manifest.version] = release
        with self._lock:
            for name, problem in refused.items():
                if self._refused.get(name) != problem:
                    self.refused_total[problem.code] += 1
                    log.error(
                        "release %s is not published: %s (%s)", name, problem.message, problem.code
                    )
            self._valid, self._refused = valid, refused
            self._published &= set(valid)
        return valid

    def check(self, directory: Path, *, named: bool = True) -> LocalRelease:
        """The release in ``directory``, verified, or :class:`ReleaseRefused`; ``named``:
        the directory must be named after the version (as in the store)."""
        if named:
            try:
                parse_version(directory.name)
            except ValueError:
                raise ReleaseRefused(
                    "bad_manifest", f"{directory.name} is not a version (1-4 dot-separated numbers)"
                ) from None
        raw = _read_bounded(directory / RELEASE_FILE)
        manifest = decode_release(raw).manifest
        verify_release(raw, self.keys, now=self.clock(), running_version=manifest.version)
        if named and manifest.version != directory.name:
            raise ReleaseRefused(
                "bad_manifest", f"{directory.name} holds the release of {manifest.version}"
            )
        for artifact in manifest.artifacts:
            path = directory / artifact.name
            size, digest = self._digest(path)
            if size != artifact.size or digest != artifact.sha256:
                raise ReleaseRefused(
                    "tampered", f"{artifact.name} does not match its size and sha256"
                )
        return LocalRelease(directory, raw, manifest)

    def _digest(self, path: Path) -> tuple[int, str]:
        try:
            info = path.stat()
        except OSError as exc:
            raise ReleaseRefused("tampered", f"{path.name}: {exc.strerror}") from None
        key = (info.st_size, info.st_mtime_ns, info.st_ino)
        cached = self._hashes.get(path)
        if cached is not None and cached[0] == key:
            return info.st_size, cached[1]
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while block := handle.read(_READ_BYTES):
                    digest.update(block)
        except OSError as exc:
            raise ReleaseRefused("tampered", f"{path.name}: {exc.strerror}") from None
        self._hashes[path] = (key, digest.hexdigest())
        return info.st_size, digest.hexdigest()

    # -- what the publisher tells it ------------------------------------------------------
    def mark_published(self, version: str, published: bool = True) -> None:
        with self._lock:
            if published:
                self._published.add(version)
            else:
                self._published.discard(version)

    def refuse(self, version: str, problem: ReleaseRefused) -> None:
        """A release found wrong while it was being published (a wheel changed)."""
        with self._lock:
            self._valid.pop(version, None)
            self._published.discard(version)
            self._refused[version] = RefusedRelease(version, problem.code, str(problem))
            self.refused_total[problem.code] += 1
        log.error("release %s is not published: %s (%s)", version, problem, problem.code)

    # -- what the API reads ------------------------------------------------------------
    def releases(self) -> list[ReleaseInfo]:
        """The verified releases, newest first."""
        with self._lock:
            infos = [
                ReleaseInfo(
                    version=m.version,
                    created_at=m.created_at,
                    expires_at=m.expires_at,
                    min_from_version=m.min_from_version,
                    key_id=m.key_id,
                    artifacts=len(m.artifacts),
                    bytes=sum(a.size for a in m.artifacts),
                    published=m.version in self._published,
                )
                for m in (release.manifest for release in self._valid.values())
            ]
        return sorted(infos, key=_newest_first)

    def refused(self) -> list[RefusedRelease]:
        with self._lock:
            return sorted(self._refused.values(), key=lambda r: r.name)


def _newest_first(info: ReleaseInfo) -> tuple[int, ...]:
    return tuple(-part for part in parse_version(info.version))


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RELEASE_BYTES + 1)
    except FileNotFoundError:
        raise ReleaseRefused("bad_manifest", f"no {RELEASE_FILE}") from None
    except OSError as exc:
        raise ReleaseRefused(
            "bad_manifest", f"cannot read {RELEASE_FILE}: {exc.strerror}"
        ) from None
    return raw


def store_directory(data_dir: Path, settings: ReleaseSettings) -> Path:
    return settings.directory or Path(data_dir) / STORE_DIR


def add_release(
    source: Path,
    store: Path,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    now: float | None = None,
    replace: bool = False,
) -> ReleaseManifest:
    """Copy the release in ``source`` (``release.json`` + wheels) into the store, after
    verifying it as the maestro will. The copy appears at once (a rename), complete.

    Raises :class:`ReleaseRefused` for a release the maestro would not publish and
    :class:`ReleaseError` when the store cannot take it.
    """
    checker = ReleaseStore(Path(source).parent, keys, clock=lambda: now or time.time())
    release = checker.check(Path(source), named=False)
    version = release.manifest.version
    target = Path(store) / version
    if target.exists() and not replace:
        raise ReleaseError(f"the store already holds release {version} ({target})")
    try:
        Path(store).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".add-{version}-", dir=store))
    except OSError as exc:
        raise ReleaseError(f"cannot write to the release store {store}: {exc.strerror}") from None
    try:
        (staging / RELEASE_FILE).write_bytes(release.raw)
        for artifact in release.manifest.artifacts:
            shutil.copyfile(release.directory / artifact.name, staging / artifact.name)
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except OSError as exc:
        raise ReleaseError(f"cannot add release {version} to {store}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return release.manifest


def newest(infos: list[ReleaseInfo]) -> ReleaseInfo | None:
    """The newest of ``infos`` by version (``compare_versions``), or None."""
    best: ReleaseInfo | None = None
    for info in infos:
        if best is None or compare_versions(info.version, best.version) > 0:
            best = info
    return best
