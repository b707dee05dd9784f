"""One agent process per state directory: the lock on <state_dir>/agent.lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from edge_agent.statelock import LOCK_NAME, StateDirInUseError, lock_state_dir


def test_a_second_lock_on_one_state_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    held = lock_state_dir(state_dir)
    assert (state_dir / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(StateDirInUseError, match=f"pid {os.getpid()}") as refused:
        lock_state_dir(state_dir)
    assert isinstance(refused.value, ConfigError), "exit status 2: systemd leaves it stopped"
    assert str(state_dir) in str(refused.value)
    held.close()  # the holder ends (kill -9 included: the kernel drops the lock)
    lock_state_dir(state_dir).close()


def test_the_state_dir_is_created_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "new" / "state"
    lock_state_dir(state_dir).close()
    assert state_dir.is_dir()
    assert state_dir.stat().st_mode & 0o077 == 0
