"""What the root host updater does to the machine (docs/updates.md): read the agent's
files, verify and install a release beside the current version, switch symlinks, prune.

The agent's state directory belongs to the agent's user, who may be running a remote
shell: nothing there is trusted. Files are opened without following symlinks and with a
size bound; the release and its wheels are copied into a root-owned staging directory
and verified there, so the agent's user cannot swap a wheel between the check and the
install; what the updater writes there (``state.json``) is a fresh file renamed into
place and given to the directory's owner.

Layout under the prefix (``/opt/arete``): ``versions/<version>/`` (one venv each),
``current`` and ``previous`` (relative symlinks into ``versions/``, replaced atomically),
``staging/<version>/`` while installing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from arete.errors import ReleaseRefused
from arete.payloads import UpdateState
from arete.release import (
    ReleaseManifest,
    check_artifact,
    compare_versions,
    verify_release,
)
from edge_agent.errors import AgentError
from edge_agent.health import HEALTH_FILE, HealthReport
from edge_agent.update_files import (
    RELEASE_FILE,
    UpdateFiles,
    UpdateRequest,
)
from edge_agent.updater_core import is_version

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_SMALL_FILE: Final = 64 * 1024
MAX_RELEASE_FILE: Final = 128 * 1024
PIP_TIMEOUT_S: Final = 900.0
# What pip and venv see: no index, no user config, nothing from the caller's environment.
_CLEAN_ENV: Final = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PIP_NO_INPUT": "1",
    "PIP_CONFIG_FILE": os.devnull,
    "LANG": "C.UTF-8",
}


class UpdaterError(AgentError):
    """The host updater cannot go on (the message says why)."""


class InstallError(UpdaterError):
    """A verified release could not be installed; nothing was switched."""


def read_limited(path: Path, limit: int) -> bytes:
    """A file's bytes, never through a symlink; OSError, or UpdaterError when larger."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UpdaterError(f"{path} is larger than {limit} bytes")
    return data


@dataclass(frozen=True, slots=True)
class AgentFiles(UpdateFiles):
    """The agent's state directory S, as the updater reads and writes it (the paths are
    the agent's own, :class:`edge_agent.update_files.UpdateFiles`)."""

    def read_request(self) -> tuple[UpdateRequest | None, str | None]:
        """(request, None), (None, why it cannot be read), or (None, None) when absent."""
        try:
            data = read_limited(self.request, MAX_SMALL_FILE)
            return msgspec.json.decode(data, type=UpdateRequest), None
        except FileNotFoundError:
            return None, None
        except (OSError, UpdaterError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            return None, f"bad request: {exc}"[:200]

    def remove_request(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.request.unlink()

    def read_state(self) -> UpdateState | None:
        try:
            data = read_limited(self.state, MAX_SMALL_FILE)
            return msgspec.json.decode(data, type=UpdateState)
        except (OSError, UpdaterError, msgspec.DecodeError, msgspec.ValidationError):
            return None  # none, or unreadable: the updater starts afresh and rewrites it

    def read_health(self) -> HealthReport | None:
        try:
            data = read_limited(self.state_dir / HEALTH_FILE, MAX_SMALL_FILE)
            return msgspec.json.decode(data, type=HealthReport)
        except (OSError, UpdaterError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def write_state(self, state: UpdateState) -> None:
        """``updates/state.json``, atomically, owned by the state directory's owner."""
        owner = self.state_dir.stat()
        if not self.root.is_dir():
            self.root.mkdir(mode=0o755)
            os.chown(self.root, owner.st_uid, owner.st_gid)
        fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(msgspec.json.encode(state) + b"\n")
                file.flush()
                os.fchmod(file.fileno(), 0o644)
                os.fchown(file.fileno(), owner.st_uid, owner.st_gid)
                os.fsync(file.fileno())
            os.replace(tmp, self.state)  # replaces a symlink, never follows it
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def stage(
        self,
        version: str,
        staging: Path,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        now: float,
        running_version: str,
    ) -> ReleaseManifest:
        """Copy ``updates/<version>/`` into ``staging`` (fresh, root-owned) and verify the
        copy: signature with ``keys``, expiry, version order, every artifact's size and
        sha256. Raises ReleaseRefused (its code) or UpdaterError."""
        source = self.release_dir(version)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755, parents=True)
        try:
            raw = read_limited(source / RELEASE_FILE, MAX_RELEASE_FILE)
        except FileNotFoundError:
            raise UpdaterError(f"no release {version} in {self.root}") from None
        except OSError as exc:
            raise UpdaterError(f"{source / RELEASE_FILE}: {exc}") from None
        manifest = verify_release(raw, keys, now=now, running_version=running_version)
        if compare_versions(manifest.version, version) != 0:
            raise ReleaseRefused(
                "bad_manifest", f"the request is for {version}, the release is {manifest.version}"
            )
        for artifact in manifest.artifacts:
            try:
                data = read_limited(source / artifact.name, artifact.size)
            except FileNotFoundError:
                raise ReleaseRefused("tampered", f"{artifact.name} is missing") from None
            except UpdaterError:
                raise ReleaseRefused(
                    "tampered", f"{artifact.name} is larger than {artifact.size} bytes"
                ) from None
            check_artifact(artifact, data)
            (staging / artifact.name).write_bytes(data)
        return manifest


@dataclass(frozen=True)
class Layout:
    """The versions under the prefix (``/opt/arete``)."""

    prefix: Path

    @property
    def versions(self) -> Path:
        return self.prefix / "versions"

    def venv(self, version: str) -> Path:
        if not is_version(version):
            raise UpdaterError(f"{version!r} is not a version")
        return self.versions / version

    def staging(self, version: str) -> Path:
        return self.prefix / "staging" / self.venv(version).name

    def linked(self, name: str) -> str | None:
        """The version ``current`` or ``previous`` points at, or None."""
        try:
            target = os.readlink(self.prefix / name)
        except OSError:
            return None
        version = Path(target).name
        return version if is_version(version) and Path(target).parent.name == "versions" else None

    def current(self) -> str:
        version = self.linked("current")
        if version is None:
            raise UpdaterError(
                f"{self.prefix / 'current'} is not a link to {self.versions}/<version>: "
                "install the agent with the arete_agent role (docs/updates.md)"
            )
        return version

    def point(self, name: str, version: str) -> None:
        """Make ``name`` (current, previous) point at ``version``: a new symlink renamed
        over the old one, so a reader sees one or the other, never none."""
        if not (self.venv(version) / "bin").is_dir():
            raise UpdaterError(f"version {version} is not installed in {self.versions}")
        tmp = self.prefix / f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"versions/{version}", tmp)
        os.replace(tmp, self.prefix / name)
        _fsync_dir(self.prefix)

    def install(self, version: str, staging: Path, package: str, python: str) -> None:
        """A venv for ``version`` beside the others, from the staged wheels only; a
        failure removes the half-made venv and raises InstallError."""
        target = self.venv(version)
        if version in {self.linked("current"), self.linked("previous")}:
            raise InstallError(f"version {version} is in use; not reinstalled")
        shutil.rmtree(target, ignore_errors=True)  # a half-made venv of an interrupted run
        self.versions.mkdir(mode=0o755, parents=True, exist_ok=True)
        steps = [
            [python, "-m", "venv", str(target)],
            [
                str(target / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-index",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--find-links",
                str(staging),
                f"{package}=={version}",
            ],
            [str(target / "bin" / "arete-agent"), "--help"],
        ]
        try:
            for argv in steps:
                _run(argv)
        except InstallError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def prune(self) -> list[str]:
        """Remove every version but ``current`` and ``previous``; the removed ones."""
        keep = {self.linked("current"), self.linked("previous")}
        removed = []
        if self.versions.is_dir():
            for path in sorted(self.versions.iterdir()):
                if path.name not in keep and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        shutil.rmtree(self.prefix / "staging", ignore_errors=True)
        return removed


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
            env=_CLEAN_ENV,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{Path(argv[0]).name}: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise InstallError(f"{' '.join(Path(a).name for a in argv[:4])}: {last}"[:200])


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
