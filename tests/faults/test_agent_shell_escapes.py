"""Allowed programs used to run others: a real agent with env, find and date allowed.

Issue 10 #14: the allowlist checked only argv[0], so `env sh -c id` and
`find . -exec id ;` ran `id`, and `date -f FILE` printed a file. Entries now constrain
the arguments too: a bare name allows the program with no arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

from arete.payloads import ReplyState
from tests.faults.conftest import Reliability
from tests.fixtures.agent import ReadyAgent, states


def test_allowed_programs_cannot_run_other_programs_or_read_files(
    ready_agent: ReadyAgent, tmp_path: Path, reliability: Reliability
) -> None:
    marker = tmp_path / "ran"
    secret = tmp_path / "secret"
    secret.write_text("s3cret-line\n")
    env = {
        "ARETE_AGENT_SHELL__ALLOW": json.dumps(["env", "find", "date"]),
        "ARETE_AGENT_SHELL__ALLOW_SHELL_STRINGS": "false",
    }
    _, commander = ready_agent("a1", env=env)
    escapes = [
        ["env", "sh", "-c", f"touch {marker}"],
        ["find", str(tmp_path), "-exec", "touch", str(marker), ";"],
        ["date", "-f", str(secret)],
    ]
    for argv in escapes:
        replies = commander.run("shell", {"argv": argv}, timeout=30)
        assert states(replies) == [ReplyState.REJECTED], argv
        assert replies[-1].error is not None
        assert replies[-1].error.code == "not_allowed"
        assert "s3cret" not in str(replies[-1].result)
    assert not marker.exists()
    allowed = commander.run("shell", {"argv": ["date"]}, timeout=30)
    assert states(allowed)[-1] is ReplyState.OK
    reliability.record(
        "shell allowlist escapes (env sh -c, find -exec, date -f) on a real agent",
        notes="3 of 3 rejected not_allowed before accepted; nothing ran; plain `date` ok",
    )
