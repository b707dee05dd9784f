"""The ``shell`` handler against real processes: output, exit status, timeout, limits, policy."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import psutil
import pytest

from arete.commands import ShellArgs, ShellResult
from edge_agent.errors import CommandFailed
from edge_agent.handlers.shell import run_shell
from edge_agent.settings import ShellSettings
from tests.fixtures.procs import wait_for


def shell(settings: ShellSettings | None = None, **args: object) -> ShellResult:
    return asyncio.run(run_shell(ShellArgs(**args), settings or ShellSettings()))  # type: ignore[arg-type]


def refused(settings: ShellSettings | None = None, **args: object) -> CommandFailed:
    with pytest.raises(CommandFailed) as failure:
        shell(settings, **args)
    return failure.value


def running(pid: int) -> bool:
    """Still there: exists and is not just a zombie waiting for its parent."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_argv_runs_the_program_directly_without_a_shell() -> None:
    result = shell(argv=["echo", "hello fleet", "$HOME", "*"])
    assert result.stdout == "hello fleet $HOME *\n"  # nothing expanded: no shell involved
    assert result.stderr == ""
    assert result.exit_code == 0
    assert not result.truncated
    assert not result.timed_out


def test_shell_string_runs_through_sh_with_both_streams() -> None:
    result = shell(command="echo $((6 * 7)); echo to-stderr >&2")
    assert result.stdout == "42\n"
    assert result.stderr == "to-stderr\n"
    assert result.exit_code == 0


def test_non_zero_exit_fails_and_keeps_the_output() -> None:
    failure = refused(command="echo partial; echo oops >&2; exit 3")
    assert failure.code == "exit_status"
    assert failure.message == "exited with status 3"
    assert isinstance(failure.result, ShellResult)
    assert failure.result.exit_code == 3
    assert failure.result.stdout == "partial\n"
    assert failure.result.stderr == "oops\n"


def test_death_by_signal_is_reported_by_name() -> None:
    failure = refused(command="kill -SEGV $$")
    assert failure.code == "exit_status"
    assert failure.message == "killed by signal SIGSEGV"


def test_timeout_kills_the_whole_process_group() -> None:
    started = time.monotonic()
    failure = refused(command="sleep 1000 & echo $!; wait", timeout_s=0.5)
    assert time.monotonic() - started < 4
    assert failure.code == "timeout"
    assert isinstance(failure.result, ShellResult)
    assert failure.result.timed_out
    assert failure.result.exit_code is None
    child = int(failure.result.stdout)  # output from before the timeout is kept
    wait_for(lambda: not running(child), 2, f"the shell's child {child} to be gone")


def test_timeout_kills_children_that_ignore_sigterm() -> None:
    # Ignored signals stay ignored in children: both the shell and sleep shrug off SIGTERM.
    failure = refused(command="trap '' TERM; sleep 1000 & echo $!; wait", timeout_s=0.3)
    assert failure.code == "timeout"
    assert isinstance(failure.result, ShellResult)
    child = int(failure.result.stdout)
    wait_for(lambda: not running(child), 2, f"the shell's child {child} to be killed")


def test_output_is_capped_and_the_program_still_finishes() -> None:
    # 2 MB of output against a 1 KiB cap: the rest is drained, so the writer never blocks.
    result = shell(command="head -c 2000000 /dev/zero | tr '\\0' x; echo done >&2", max_output=1024)
    assert result.stdout == "x" * 1024
    assert result.truncated
    assert result.stderr == "done\n"
    assert result.exit_code == 0


def test_output_that_is_not_utf8_is_replaced_not_lost() -> None:
    result = shell(command="printf 'ok\\377ok'")
    assert result.stdout == "ok\ufffdok"


def test_disabled_shell_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    failure = refused(ShellSettings(enabled=False), argv=["touch", str(marker)])
    assert failure.code == "not_allowed"
    assert failure.message == "shell is disabled on this agent"
    assert not marker.exists()


def test_allowlist_lets_listed_programs_run_and_refuses_the_rest(tmp_path: Path) -> None:
    settings = ShellSettings(allow=["echo"])
    assert shell(settings, argv=["echo", "allowed"]).stdout == "allowed\n"
    echo = shutil.which("echo")
    assert echo is not None
    assert shell(settings, argv=[echo, "by path"]).stdout == "by path\n"

    marker = tmp_path / "ran"
    failure = refused(settings, argv=["touch", str(marker)])
    assert failure.code == "not_allowed"
    assert "'touch' is not in this agent's shell allowlist" in failure.message
    assert not marker.exists()


def test_allowlist_refuses_another_program_with_a_listed_name(tmp_path: Path) -> None:
    impostor = tmp_path / "echo"
    impostor.write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\n")
    impostor.chmod(0o755)
    failure = refused(ShellSettings(allow=["echo"]), argv=[str(impostor)])
    assert failure.code == "not_allowed"
    assert not (tmp_path / "ran").exists()


def test_allowlist_refuses_shell_strings(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    settings = ShellSettings(allow=["echo"], allow_shell_strings=True)
    failure = refused(settings, command=f"echo hi; touch {marker}")
    assert failure.code == "not_allowed"
    assert "send argv instead" in failure.message
    assert not marker.exists()


def test_shell_strings_can_be_turned_off_alone() -> None:
    settings = ShellSettings(allow_shell_strings=False)
    assert refused(settings, command="echo hi").code == "not_allowed"
    assert shell(settings, argv=["echo", "hi"]).stdout == "hi\n"


def test_cwd_is_used_and_must_exist(tmp_path: Path) -> None:
    assert shell(argv=["pwd"], cwd=str(tmp_path)).stdout == f"{tmp_path}\n"
    failure = refused(argv=["pwd"], cwd=str(tmp_path / "missing"))
    assert failure.code == "bad_args"
    assert "does not exist" in failure.message


def test_unknown_program_is_not_found() -> None:
    failure = refused(argv=["arete-no-such-program", "x"])
    assert failure.code == "not_found"
    assert "arete-no-such-program" in failure.message


def test_agent_settings_are_not_passed_to_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARETE_AGENT_MQTT__PASSWORD", "fleet-secret")
    monkeypatch.setenv("ARETE_TEST_VISIBLE", "yes")
    output = shell(argv=["env"]).stdout
    assert "fleet-secret" not in output
    assert "ARETE_TEST_VISIBLE=yes" in output


def test_file_that_is_not_executable_cannot_run(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    failure = refused(argv=[str(script)])
    assert failure.code == "exec_failed"
    assert "is not executable" in failure.message
