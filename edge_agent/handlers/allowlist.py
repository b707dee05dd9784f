"""The shell allowlist: which argv (program *and* arguments) an agent runs.

An allowed program is only as safe as the arguments it is given: ``env sh -c id``,
``find . -exec id ;``, ``date -f /etc/shadow``, ``awk 'BEGIN{system("id")}'`` each run
anything or read any file. So an entry names a whole command, never a bare program:

- a string is one exact command line, split like a POSIX shell would (``"uptime"``,
  ``"systemctl status nginx"``, ``"journalctl -u 'my unit'"``). A bare name therefore
  means *that program with no arguments* (the safe reading of older configs, where a
  name allowed any arguments);
- a table ``{program = "journalctl", args = ["-u", "[a-z0-9@._-]+", "-n", "[0-9]{1,4}"]}``
  takes one regular expression per argument, each matched against the whole argument;
  the argument count must match too;
- ``{program = "ls", any_args = true}`` allows any arguments: the program then decides
  what runs, so never do this for programs that run others or read files.

``cwd``: a command with a working directory is refused unless its entry has a ``cwd``
regular expression that the directory's real path matches (relative arguments name
different files in different directories). The first entry that matches wins.

A program is a name (resolved on the agent's ``PATH`` when checked; that absolute path
is what runs) or an absolute path; an absolute ``argv[0]`` matches an entry named by its
basename only if it is the file that name resolves to here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass

from edge_agent.errors import CommandFailed, ConfigError
from edge_agent.settings import AllowRule

AllowEntry = str | AllowRule


@dataclass(frozen=True, slots=True)
class Rule:
    """One allowlist entry, compiled: ``args`` None means any arguments."""

    program: str
    args: tuple[re.Pattern[str], ...] | None
    cwd: re.Pattern[str] | None


def compile_rule(entry: AllowEntry, where: str = "shell.allow") -> Rule:
    """The compiled entry, or :class:`ConfigError` saying what is wrong with it."""
    if isinstance(entry, str):
        try:
            words = shlex.split(entry)
        except ValueError as exc:
            raise ConfigError(f"{where}: {entry!r} is not a valid command line: {exc}") from None
        if not words:
            raise ConfigError(f"{where}: an empty entry allows nothing; remove it")
        _check_program(words[0], where)
        exact = tuple(re.compile(re.escape(word)) for word in words[1:])
        return Rule(words[0], exact, None)
    _check_program(entry.program, where)
    if entry.any_args and entry.args:
        raise ConfigError(f"{where}: give 'args' or 'any_args = true', not both")
    patterns = None if entry.any_args else tuple(_regex(p, where) for p in entry.args)
    cwd = None if entry.cwd is None else _regex(entry.cwd, where)
    return Rule(entry.program, patterns, cwd)


def check_allowlist(allow: list[AllowEntry], argv: list[str], cwd: str | None) -> list[str]:
    """The argv to run (its program resolved), or :class:`CommandFailed` ``not_allowed``."""
    program, args = argv[0], argv[1:]
    rules = [compile_rule(entry, f"shell.allow[{i}]") for i, entry in enumerate(allow)]
    mine = [rule for rule in rules if _names_program(rule.program, program)]
    if not mine:
        raise CommandFailed("not_allowed", f"{program!r} is not in this agent's shell allowlist")
    fitting = [rule for rule in mine if _args_fit(rule, args)]
    if not fitting:
        raise CommandFailed(
            "not_allowed",
            f"{program!r} is in this agent's shell allowlist, but not with these arguments",
        )
    if cwd is not None:
        real = os.path.realpath(cwd)
        if not any(rule.cwd is not None and rule.cwd.fullmatch(real) for rule in fitting):
            raise CommandFailed(
                "not_allowed",
                f"this agent's shell allowlist does not allow {program!r} in {cwd!r}; "
                "leave cwd out, or allow it in the entry (cwd = ...)",
            )
    return [_resolved(program), *args]


def _check_program(program: str, where: str) -> None:
    if not program or (os.sep in program and not os.path.isabs(program)):
        raise ConfigError(
            f"{where}: {program!r}: give a program name or an absolute path, not a relative one"
        )


def _regex(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"{where}: {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def _args_fit(rule: Rule, args: list[str]) -> bool:
    if rule.args is None:
        return True
    if len(args) != len(rule.args):
        return False
    return all(pattern.fullmatch(arg) for pattern, arg in zip(rule.args, args, strict=True))


def _names_program(listed: str, program: str) -> bool:
    """Whether ``program`` (argv[0]: a name or an absolute path) is the listed one."""
    if listed == program:
        return True
    # A path is allowed by its basename only if it is the program that name means here:
    # "ls" allows /usr/bin/ls, not a file called ls in some writable directory.
    if os.path.isabs(program) and not os.path.isabs(listed):
        return os.path.basename(program) == listed and _same_file(shutil.which(listed), program)
    return False


def _resolved(program: str) -> str:
    """What runs is the file that was checked: a name is resolved on PATH here and now,
    so neither ``cwd`` nor a relative PATH entry can put another file in its place."""
    if os.path.isabs(program):
        return program
    found = shutil.which(program)
    if found is None:
        raise CommandFailed("not_found", f"no program {program!r} on this machine")
    return os.path.abspath(found)


def _same_file(found: str | None, program: str) -> bool:
    try:
        return found is not None and os.path.samefile(found, program)
    except (OSError, ValueError):  # missing, unreadable, or a NUL in the path
        return False
