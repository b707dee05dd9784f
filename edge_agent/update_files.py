"""The files between the agent and its host's updater, in the state dir (docs/updates.md).

- ``updates/<version>/``: ``release.json`` (the signed manifest, byte for byte as
  published) and the artifacts, written by the agent once it verified all of them: a
  temporary directory, renamed into place when complete.
- ``updates/request.json``: an :class:`UpdateRequest`, written atomically by the agent.
- ``updates/state.json``: an :class:`arete.payloads.UpdateState`, written by the
  updater; the agent reads it at start and every :data:`STATE_POLL_S` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from arete.payloads import UpdatePhase, UpdateState
from edge_agent.errors import AgentError
from edge_agent.health import write_atomic

log = logging.getLogger("arete.agent.update")

UPDATES_DIR: Final = "updates"
REQUEST_FILE: Final = "request.json"
STATE_FILE: Final = "state.json"
RELEASE_FILE: Final = "release.json"
PARTIAL_PREFIX: Final = ".partial-"
STATE_POLL_S: Final = 2.0
MAX_STATE_BYTES: Final = 64 * 1024
# The updater is working on an update: another one must wait.
IN_PROGRESS: Final = frozenset({UpdatePhase.PENDING, UpdatePhase.INSTALLING, UpdatePhase.SWITCHED})


class UpdateRequest(msgspec.Struct, kw_only=True, frozen=True):
    """``request.json``: what the agent asks its host's updater to do."""

    version: str | None  # None with rollback
    rollback: bool
    from_version: str
    command_id: str
    health_deadline_s: float
    requested_at: float


@dataclass(frozen=True, slots=True)
class UpdateFiles:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / UPDATES_DIR

    @property
    def request(self) -> Path:
        return self.root / REQUEST_FILE

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    def release_dir(self, version: str) -> Path:
        return self.root / version

    def clean_partial(self) -> None:
        """At start: remove what an interrupted spool left behind."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed a half-written release", extra={"kv": {"path": str(path)}})

    def read_state(self) -> UpdateState | None:
        """The updater's state, or None when there is none (or it cannot be read)."""
        try:
            with open(self.state, "rb") as file:
                data = file.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UpdateFileError(f"{self.state}: {exc}") from None
        if len(data) > MAX_STATE_BYTES:
            raise UpdateFileError(f"{self.state}: larger than {MAX_STATE_BYTES} bytes")
        try:
            return msgspec.json.decode(data, type=UpdateState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpdateFileError(f"{self.state}: not an update state: {exc}") from None

    def in_progress(self) -> str | None:
        """Why a new update must wait (a pending request, the updater at work), or None."""
        if self.request.exists():
            return "an update request is waiting for the host's updater"
        try:
            state = self.read_state()
        except UpdateFileError:
            return None  # unreadable: the updater rewrites it; not a reason to block forever
        if state is not None and state.phase in IN_PROGRESS:
            return f"an update to {state.to_version} is {state.phase.value}"
        return None

    def spool(self, version: str, files: Iterable[tuple[str, bytes]]) -> Path:
        """Write ``files`` (name, bytes) to ``updates/<version>/``, all or nothing."""
        self.root.mkdir(mode=0o755, exist_ok=True)
        partial = self.root / f"{PARTIAL_PREFIX}{version}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o755)
        try:
            for name, data in files:
                with open(partial / name, "xb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
            final = self.release_dir(version)
            shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's copy
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _fsync_dir(self.root)
        return final

    def write_request(self, request: UpdateRequest) -> None:
        self.root.mkdir(mode=0o755, exist_ok=True)
        write_atomic(self.request, msgspec.json.encode(request) + b"\n")

    def request_id(self) -> str | None:
        """The command id of the waiting request, if there is a readable one."""
        try:
            request = msgspec.json.decode(self.request.read_bytes(), type=UpdateRequest)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return request.command_id

    def withdraw(self, version: str | None) -> None:
        """No updater took the request: take it back, with its spooled release."""
        with contextlib.suppress(FileNotFoundError):
            self.request.unlink()
        if version is not None:
            shutil.rmtree(self.release_dir(version), ignore_errors=True)


class UpdateFileError(AgentError):
    """An update file cannot be read (the message names it)."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
