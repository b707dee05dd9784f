"""``arete agent updater``: the root host updater of self-updates (docs/updates.md).

systemd starts it (arete-agent-update.service) when the agent leaves a request in
``S/updates/request.json`` (arete-agent-update.path) and at boot. It asks
:func:`edge_agent.updater_core.decide` what to do, does it (:mod:`edge_agent.updater_host`),
records the phase in ``S/updates/state.json`` and asks again, until the update is
healthy, rolled back or failed; then it removes the request and exits. Killed at any
point, the next start resumes from ``state.json``.

It runs the code of the version that was current when it started (the unit resolves
``/opt/arete/current`` before it execs) and imports everything it needs at start: a
switch of ``current`` never changes the code of a running updater.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from arete.errors import ReleaseRefused
from arete.logs import setup_logging
from edge_agent.errors import ConfigError
from edge_agent.settings import AgentSettings, load_settings
from edge_agent.update import load_release_keys
from edge_agent.updater_core import (
    Commit,
    Done,
    Finish,
    Install,
    Rollback,
    Switch,
    UnitStatus,
    View,
    Wait,
    decide,
    failed,
    installing,
    parse_unit_status,
    rolled_back,
    rolling_back,
    switched,
)
from edge_agent.updater_host import AgentFiles, InstallError, Layout, UpdaterError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("arete.agent.updater")

DEFAULT_PREFIX: Final = "/opt/arete"
DEFAULT_STATE_DIR: Final = "/var/lib/arete-agent"  # the agent unit's StateDirectory
DEFAULT_RESTART: Final = ("systemctl reset-failed arete-agent", "systemctl restart arete-agent")
DEFAULT_STATUS: Final = "systemctl show -p ActiveState -p SubState -p NRestarts arete-agent"
COMMAND_TIMEOUT_S: Final = 60.0
# The agent's config names $CREDENTIALS_DIRECTORY (its MQTT password); the updater never
# reads that file, but the settings must load outside the agent's unit.
_CREDENTIALS_PLACEHOLDER: Final = "/run/credentials/arete-agent.service"


@dataclass
class Options:
    config: str | None
    prefix: Path = Path(DEFAULT_PREFIX)
    state_dir: Path | None = None
    restart: list[list[str]] = field(
        default_factory=lambda: [shlex.split(c) for c in DEFAULT_RESTART]
    )
    status: list[str] | None = field(default_factory=lambda: shlex.split(DEFAULT_STATUS))
    python: str = getattr(sys, "_base_executable", sys.executable)
    poll_s: float = 0.5


def load_keys(settings: AgentSettings) -> dict[str, Ed25519PublicKey]:
    """The release keys of the root-owned agent config ([update] release_keys and
    release_key_file, read as the agent reads them); empty when self-update is not
    enabled."""
    if not settings.update.enabled:
        return {}
    return load_release_keys(settings.update)


class Updater:
    """One run: from the files on disk to a final phase (or nothing to do)."""

    def __init__(
        self,
        options: Options,
        settings: AgentSettings,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.keys = load_keys(settings)
        state_dir = options.state_dir or Path(settings.state_dir or DEFAULT_STATE_DIR)
        self.files = AgentFiles(state_dir)
        self.layout = Layout(options.prefix)
        self.clock, self.sleep = clock, sleep
        self.installed: str | None = None
        self.watch_until: float | None = None
        self.restarts_at_switch = 0

    def view(self) -> View:
        request, problem = self.files.read_request()
        state = self.files.read_state()
        watching = state is not None and self.watch_until is not None
        return View(
            request=request,
            request_error=problem,
            state=state,
            current=self.layout.current(),
            previous=self.layout.linked("previous"),
            now=self.clock(),
            health=self.files.read_health() if watching else None,
            unit=self.unit_status() if watching else None,
            restarts_at_switch=self.restarts_at_switch,
            installed=self.installed,
            watch_until=self.watch_until,
        )

    def run(self) -> int:
        """Until the update is done; the process exit code."""
        while True:
            view = self.view()
            step = decide(view)
            if isinstance(step, Wait):
                self.sleep(self.options.poll_s)
            elif isinstance(step, Done):
                if step.remove_request:
                    self.files.remove_request()
                return 0
            elif isinstance(step, Finish | Commit):
                self.files.write_state(step.state)
                if isinstance(step, Commit):
                    self.layout.point("previous", step.state.from_version)
                    removed = self.layout.prune()
                    log.info(
                        "update healthy",
                        extra={"kv": {"version": step.state.to_version, "pruned": removed}},
                    )
                else:
                    log.info("update ended", extra={"kv": _kv(step.state)})
                self.files.remove_request()
                return 0
            elif isinstance(step, Install):
                if not self.install(view, step):
                    return 0
            elif isinstance(step, Switch):
                self.switch(view, step)
            else:
                self.rollback(step)
                return 0

    def install(self, view: View, step: Install) -> bool:
        command_id = view.request.command_id if view.request is not None else None
        start = installing(step.from_version, step.to_version, command_id, self.clock())
        self.files.write_state(start)
        log.info("installing", extra={"kv": _kv(start)})
        try:
            if not self.keys:
                raise ReleaseRefused(
                    "not_enabled", "self-update is not enabled in the agent config, or no key"
                )
            staging = self.layout.staging(step.to_version)
            manifest = self.files.stage(
                step.to_version,
                staging,
                self.keys,
                now=self.clock(),
                running_version=view.current,
            )
            self.layout.install(step.to_version, staging, manifest.package, self.options.python)
        except ReleaseRefused as exc:
            reason = f"{exc.code}: {exc}"
        except (InstallError, UpdaterError, OSError) as exc:
            reason = f"install_failed: {exc}"
        else:
            self.installed = step.to_version
            return True
        end = failed(step.from_version, step.to_version, command_id, reason, self.clock())
        self.files.write_state(end)
        log.warning("update failed; nothing switched", extra={"kv": _kv(end)})
        self.files.remove_request()
        return False

    def switch(self, view: View, step: Switch) -> None:
        command_id = view.request.command_id if view.request is not None else None
        deadline = view.request.health_deadline_s if view.request is not None else 120.0
        state = switched(step.from_version, step.to_version, command_id, self.clock())
        self.files.write_state(state)  # first: a restart from here switches again
        self.layout.point("current", step.to_version)
        log.info("switched; restarting the agent", extra={"kv": _kv(state)})
        self.restart_agent()
        unit = self.unit_status()
        self.restarts_at_switch = unit.restarts if unit is not None else 0
        self.watch_until = state.ts + deadline

    def rollback(self, step: Rollback) -> None:
        self.files.write_state(rolling_back(step.state, step.reason))
        self.layout.point("current", step.state.from_version)
        log.warning("rolling back", extra={"kv": {**_kv(step.state), "reason": step.reason}})
        self.restart_agent()
        self.files.write_state(rolled_back(step.state, step.reason, self.clock()))
        self.files.remove_request()

    def restart_agent(self) -> None:
        for argv in self.options.restart:
            problem = _call(argv)
            if problem:
                log.warning(
                    "agent restart step failed", extra={"kv": {"argv": argv, "error": problem}}
                )

    def unit_status(self) -> UnitStatus | None:
        if not self.options.status:
            return None
        try:
            done = subprocess.run(
                self.options.status,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_unit_status(done.stdout) if done.returncode == 0 else None


def _call(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _kv(state: object) -> dict[str, object]:
    names = ("phase", "from_version", "to_version", "command_id", "reason")
    return {name: getattr(state, name, None) for name in names}


DESCRIPTION = """\
The agent's root host updater: installs a release the agent verified and spooled in
STATE_DIR/updates/ beside the current version, switches PREFIX/current, restarts the
agent and keeps the new version only if it reports healthy in time (else it switches
back). Run by arete-agent-update.service; it exits when there is nothing (more) to do.
"""


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="arete agent updater", description=DESCRIPTION)
    parser.add_argument("--config", "-c", metavar="FILE", help="the agent's TOML file")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="versions/, current, previous")
    parser.add_argument(
        "--state-dir",
        help=f"the agent's state dir (default: state_dir of the config, else {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--restart-command",
        action="append",
        metavar="CMD",
        help="restarts the agent (repeatable; default: systemctl)",
    )
    parser.add_argument(
        "--status-command",
        metavar="CMD",
        help="prints ActiveState=, SubState=, NRestarts= ('' for none)",
    )
    parser.add_argument("--python", help="the Python that makes the venvs")
    parser.add_argument("--poll-s", type=float, default=0.5)
    args = parser.parse_args(argv)
    options = Options(config=args.config, prefix=Path(args.prefix), poll_s=args.poll_s)
    if args.state_dir:
        options.state_dir = Path(args.state_dir)
    if args.restart_command:
        options.restart = [shlex.split(command) for command in args.restart_command]
    if args.status_command is not None:
        options.status = shlex.split(args.status_command) or None
    if args.python:
        options.python = args.python
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    env = {**os.environ}
    env.setdefault("CREDENTIALS_DIRECTORY", _CREDENTIALS_PLACEHOLDER)
    try:
        settings = load_settings(options.config, env)
        setup_logging(settings.log_level, settings.log_format)
        return Updater(options, settings).run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UpdaterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
