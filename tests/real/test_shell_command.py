"""The ``shell`` handler against real processes: output, exit status, timeout, limits, policy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import msgspec
import psutil
import pytest

from arete.commands import CommandName, ShellArgs, ShellResult
from edge_agent.dispatch import deadline_s
from edge_agent.errors import CommandFailed
from edge_agent.handlers.shell import OUTPUT_GRACE_S, TERM_GRACE_S, checked_argv, run_shell
from edge_agent.settings import AllowRule, ShellSettings
from tests.fixtures.procs import wait_for

KiB = 1024
MiB = 1024 * KiB


def shell(settings: ShellSettings | None = None, **args: object) -> ShellResult:
    return asyncio.run(run_shell(ShellArgs(**args), settings or ShellSettings()))  # type: ignore[arg-type]


def refused(settings: ShellSettings | None = None, **args: object) -> CommandFailed:
    with pytest.raises(CommandFailed) as failure:
        shell(settings, **args)
    return failure.value


def json_size(text: str) -> int:
    return len(msgspec.json.encode(text)) - 2  # as in the reply, without the quotes


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


def test_output_past_the_budget_is_cut_and_the_writer_stopped() -> None:
    # 2 MB against a 1 KiB budget: the agent closes the pipes, so tr dies of SIGPIPE (as
    # under ``| head``) and the shell with it when it writes to the closed stderr.
    result = shell(command="head -c 2000000 /dev/zero | tr '\\0' x; echo done >&2", max_output=KiB)
    assert result.stdout == "x" * KiB
    assert result.stderr == ""  # the budget is shared: stdout used it all
    assert result.truncated


def test_output_budget_counts_both_streams_as_they_are_encoded_in_json() -> None:
    # A NUL is 6 bytes in JSON (\u0000), so 4 KiB of budget holds 682 of them.
    result = shell(
        command="head -c 100000 /dev/zero; head -c 100000 /dev/zero >&2", max_output=4 * KiB
    )
    assert result.stdout == "\0" * (4 * KiB // 6)
    assert result.stderr == ""
    assert result.truncated
    # An undecodable byte becomes U+FFFD, 3 bytes in UTF-8.
    result = shell(command="head -c 100000 /dev/zero | tr '\\0' '\\377'", max_output=4 * KiB)
    assert result.stdout == "\ufffd" * (4 * KiB // 3)
    # Both streams together, however the budget is split between them.
    result = shell(command="printf 'abc\\0'; printf 'def\\0\\0' >&2; head -c 10000 /dev/zero")
    assert json_size(result.stdout) + json_size(result.stderr) <= 64 * KiB


def test_the_largest_budget_on_both_streams_stays_that_size_in_the_reply() -> None:
    # Review finding: 4 MB of NULs on each stream used to make a 50 MB result.
    command = "head -c 4M /dev/zero; head -c 4M /dev/zero >&2"
    result = shell(command=command, max_output=4 * MiB)
    assert result.truncated
    assert json_size(result.stdout) + json_size(result.stderr) <= 4 * MiB
    assert len(msgspec.json.encode(result)) < 4 * MiB + KiB


def test_a_writer_past_the_budget_is_stopped_not_drained_until_the_timeout() -> None:
    started, cpu = time.monotonic(), time.process_time()
    result = shell(argv=["yes"], timeout_s=3, max_output=KiB)  # returns: not a failure
    assert time.monotonic() - started < 1.5
    assert time.process_time() - cpu < 0.5  # draining for 3 s cost the agent 2.8 s of CPU
    assert result.truncated
    assert not result.timed_out
    assert result.exit_code == -signal.SIGPIPE  # as observed: the pipe closed under it
    assert result.stdout == "y\n" * 341 + "y"  # "\n" is 2 bytes in JSON: 341 * 3 + 1
    # Through a shell, the SIGPIPE death is reported as 128 + 13.
    result = shell(command="yes | cat", timeout_s=3, max_output=KiB)
    assert result.truncated
    assert result.exit_code == 128 + signal.SIGPIPE


def test_a_failure_of_its_own_is_still_a_failure_when_output_was_cut() -> None:
    failure = refused(command="head -c 100000 /dev/zero; exit 3", max_output=KiB)
    assert failure.code == "exit_status"
    assert isinstance(failure.result, ShellResult)
    assert failure.result.truncated
    assert failure.result.exit_code == 3


def test_background_children_do_not_hold_up_the_reply() -> None:
    started = time.monotonic()
    result = shell(command="echo hi; sleep 30 & echo $! >&2")
    elapsed = time.monotonic() - started
    sleeper = int(result.stderr)
    try:
        assert result.stdout == "hi\n"
        assert result.exit_code == 0
        # sleep holds the pipes open: output is awaited for OUTPUT_GRACE_S, not 30 s.
        assert OUTPUT_GRACE_S - 0.1 < elapsed < OUTPUT_GRACE_S + 1
        assert running(sleeper)  # started on purpose, so it is left alone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)


def test_the_agents_deadline_outlasts_the_slowest_way_a_shell_command_ends() -> None:
    # Ignores SIGTERM (the full TERM grace is used) and leaves a child in a session of
    # its own holding the pipes (the full output grace is used).
    args = ShellArgs(command="trap '' TERM; setsid sleep 30 & echo $!; sleep 1000", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(CommandFailed) as failure:
        asyncio.run(run_shell(args, ShellSettings()))
    elapsed = time.monotonic() - started
    assert isinstance(failure.value.result, ShellResult)
    escaped = int(failure.value.result.stdout)
    os.kill(escaped, signal.SIGKILL)
    assert elapsed > args.timeout_s + TERM_GRACE_S + OUTPUT_GRACE_S - 0.2
    assert elapsed + 1.0 < deadline_s(CommandName.SHELL, args)


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
    settings = ShellSettings(allow=["echo allowed", "echo 'by path'"])
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


def impostor_echo(directory: Path, marker: Path) -> None:
    (directory / "bin").mkdir(parents=True)
    impostor = directory / "bin" / "echo"
    impostor.write_text(f"#!/bin/sh\ntouch {marker}\n")
    impostor.chmod(0o755)


def test_relative_program_paths_are_refused_by_an_allowlist(tmp_path: Path) -> None:
    # Review finding: "bin/echo" passed the allowlist, checked against the agent's
    # directory, and then ran from ``cwd``.
    marker = tmp_path / "ran"
    impostor_echo(tmp_path, marker)
    failure = refused(ShellSettings(allow=["echo"]), argv=["bin/echo", "hi"], cwd=str(tmp_path))
    assert failure.code == "not_allowed"
    assert "relative path" in failure.message
    assert not marker.exists()


def test_without_an_allowlist_a_relative_path_runs_from_cwd(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    impostor_echo(tmp_path, marker)
    assert checked_argv(ShellArgs(argv=["bin/echo", "hi"], cwd=str(tmp_path)), ShellSettings()) == [
        "bin/echo",
        "hi",
    ]
    asyncio.run(run_shell(ShellArgs(argv=["bin/echo"], cwd=str(tmp_path)), ShellSettings()))
    assert marker.exists(), "the program in cwd ran, as it would in a terminal"


def test_an_allowlisted_name_runs_the_program_it_was_checked_as(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative PATH entry means one file to the agent and another in the command's cwd.
    marker = tmp_path / "ran"
    impostor_echo(tmp_path / "work", marker)
    (tmp_path / "agent").mkdir()
    monkeypatch.chdir(tmp_path / "agent")
    monkeypatch.setenv("PATH", f"bin{os.pathsep}{os.environ['PATH']}")
    settings = ShellSettings(allow=[AllowRule(program="echo", args=["hi"], cwd=".*")])
    result = shell(settings, argv=["echo", "hi"], cwd=str(tmp_path / "work"))
    assert result.stdout == "hi\n"
    assert not marker.exists()


def test_an_allowlisted_program_that_is_not_installed_is_not_found() -> None:
    failure = refused(
        ShellSettings(allow=["arete-no-such-program"]), argv=["arete-no-such-program"]
    )
    assert failure.code == "not_found"


NUL_ARGS = [
    ({"argv": ["/usr/bin/\0/echo", "hi"]}, ["echo"]),  # used to raise ValueError: no reply
    ({"argv": ["/usr/bin/\0/echo", "hi"]}, []),  # used to end as a vague "internal"
    ({"argv": ["echo", "h\0i"]}, []),
    ({"argv": ["echo", "h\0i"]}, ["echo"]),
    ({"command": "echo \0"}, []),
    ({"argv": ["pwd"], "cwd": "/tmp\0"}, []),
    ({"argv": ["pwd"], "cwd": "/tmp\0"}, ["pwd"]),
]


@pytest.mark.parametrize(("args", "allow"), NUL_ARGS)
def test_a_nul_character_is_bad_args_not_a_crash(args: dict[str, object], allow: list[str]) -> None:
    # ShellArgs refuses a NUL when decoded; built directly, the handler refuses it too.
    assert refused(ShellSettings(allow=list(allow)), **args).code == "bad_args"


def test_allowed_programs_cannot_be_given_arguments_that_run_or_read_anything_else(
    tmp_path: Path,
) -> None:
    # Issue 10 #14: with env, find and date allowed, these ran `id` as root / read a file.
    marker = tmp_path / "ran"
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    settings = ShellSettings(allow=["env", "find", "date"])  # bare names: no arguments
    escapes = [
        ["env", "sh", "-c", f"touch {marker}"],
        ["find", str(tmp_path), "-exec", "touch", str(marker), ";"],
        ["date", "-f", str(secret)],
    ]
    for argv in escapes:
        failure = refused(settings, argv=argv)
        assert failure.code == "not_allowed", argv
        assert "not with these arguments" in failure.message
    assert not marker.exists()
    assert shell(settings, argv=["date"]).exit_code == 0  # what the entry does allow


def test_argument_patterns_match_each_argument_whole_and_their_number() -> None:
    settings = ShellSettings(allow=[AllowRule(program="echo", args=["-n", "[0-9]{1,3}"])])
    assert shell(settings, argv=["echo", "-n", "42"]).stdout == "42"
    for argv in (
        ["echo", "-n", "42 and more"],  # matched whole, not searched
        ["echo", "-n", "42", "extra"],
        ["echo", "-n"],
        ["echo", "-e", "42"],
    ):
        assert refused(settings, argv=argv).code == "not_allowed", argv


def test_any_arguments_only_when_the_entry_says_so_explicitly() -> None:
    settings = ShellSettings(allow=[AllowRule(program="echo", any_args=True)])
    assert shell(settings, argv=["echo", "anything", "at", "all"]).stdout == "anything at all\n"


def test_a_working_directory_needs_an_entry_that_allows_it(tmp_path: Path) -> None:
    narrow = ShellSettings(allow=["pwd"])
    failure = refused(narrow, argv=["pwd"], cwd=str(tmp_path))
    assert failure.code == "not_allowed"
    assert "leave cwd out" in failure.message
    wide = ShellSettings(allow=[AllowRule(program="pwd", cwd=f"{tmp_path.resolve()}(/.*)?")])
    assert shell(wide, argv=["pwd"], cwd=str(tmp_path)).stdout.strip() == str(tmp_path)
    assert refused(wide, argv=["pwd"], cwd="/").code == "not_allowed"


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
