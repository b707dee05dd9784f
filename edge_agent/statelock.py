"""One agent process per state directory: an exclusive lock on ``<state_dir>/agent.lock``.

Two processes on one state directory would share its seq counter and outbox: samples
of one would be numbered like the other's and dropped as duplicates. So the second is
refused at start, with the first one's pid in the message. The lock is held by an open
file for the life of the process (the kernel drops it when the process ends, even after
kill -9); a re-exec for ``restart`` closes the file (it is not inheritable) and the new
image takes the lock again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO, Final

from edge_agent.errors import ConfigError, StateError

LOCK_NAME: Final = "agent.lock"


class StateDirInUseError(ConfigError):
    """Another process already runs an agent on this state directory (exit status 2)."""


def lock_state_dir(state_dir: Path) -> IO[bytes]:
    """Take the state directory's lock; keep the returned file open while running."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (state_dir / LOCK_NAME).open("a+b")
    except OSError as exc:
        raise StateError(f"cannot open the state directory {state_dir}: {exc}") from None
    handle.seek(0)
    if not _try_lock(handle):
        handle.seek(0)
        owner = handle.read(32).decode("ascii", "replace").strip() or "unknown"
        handle.close()
        raise StateDirInUseError(
            f"another agent process (pid {owner}) already uses the state directory "
            f"{state_dir}; run one agent per state directory (two copies of one agent "
            "would share its sample numbers and lose samples)"
        )
    with contextlib.suppress(OSError):  # only for a second process's message: a full
        handle.seek(0)  # disk must not stop the agent
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
    return handle


def _try_lock(handle: IO[bytes]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # e.g. a file system without locks: refuse rather than risk it
        raise StateError(f"cannot lock {handle.name}: {exc}") from None
    return True
