"""Who may open a terminal on an agent: its policy, checked before the command is accepted."""

from __future__ import annotations

import os

import msgspec
import pytest

from arete.commands import TerminalArgs
from edge_agent.errors import CommandFailed
from edge_agent.handlers.terminal import (
    FALLBACK_SHELL,
    check_policy,
    resolve_shell,
    shell_environment,
)
from edge_agent.settings import AgentSettings

ARGS = TerminalArgs(session="s1")


def settings(**sections: dict[str, object]) -> AgentSettings:
    return msgspec.convert({"id": "a1", **sections}, AgentSettings)


def refusal(agent: AgentSettings, open_sessions: tuple[str, ...] = ()) -> tuple[str, str]:
    with pytest.raises(CommandFailed) as caught:
        check_policy(ARGS, agent, open_sessions)
    return caught.value.code, caught.value.message


def test_a_default_agent_allows_a_terminal() -> None:
    check_policy(ARGS, settings(), ())


@pytest.mark.parametrize(
    ("sections", "says"),
    [
        ({"terminal": {"enabled": False}}, "terminals are disabled"),
        ({"shell": {"enabled": False}}, "shell is disabled"),
        ({"shell": {"allow": ["uptime"]}}, "restricted"),
        ({"shell": {"allow_shell_strings": False}}, "restricted"),
    ],
)
def test_a_terminal_is_refused_where_the_shell_is_off_or_restricted(
    sections: dict[str, dict[str, object]], says: str
) -> None:
    code, message = refusal(settings(**sections))
    assert code == "not_allowed"
    assert says in message


def test_sessions_beyond_the_limit_are_refused_as_busy() -> None:
    agent = settings(terminal={"max_sessions": 2})
    check_policy(ARGS, agent, ("x",))
    assert refusal(agent, ("x", "y"))[0] == "busy"


def test_a_session_id_already_open_is_refused() -> None:
    assert refusal(settings(), ("s1",))[0] == "duplicate_session"


def test_the_configured_shell_must_be_an_executable_absolute_path() -> None:
    assert resolve_shell("/bin/sh") == "/bin/sh"
    for bad in ("sh", "/nonexistent/shell", "/etc", "/etc/passwd"):
        with pytest.raises(CommandFailed) as caught:
            resolve_shell(bad)
        assert caught.value.code == "not_found"


def test_without_a_configured_shell_the_login_shell_or_bin_sh_runs() -> None:
    shell = resolve_shell(None)
    assert os.path.isabs(shell)
    assert os.access(shell, os.X_OK) or shell == FALLBACK_SHELL


def test_the_shell_gets_a_terminal_type_and_none_of_the_agents_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARETE_AGENT_MQTT__PASSWORD", "s3cret-value")
    env = shell_environment("/bin/sh")
    assert env["TERM"] == "xterm-256color"
    assert env["SHELL"] == "/bin/sh"
    assert not any(key.startswith("ARETE_AGENT_") for key in env)
    assert "s3cret-value" not in env.values()
