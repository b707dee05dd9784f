"""The root host updater (edge_agent/updater.py) on a real layout, with real venvs and a
real agent (docs/updates.md "Host updater and rollback").

No systemd here: a temporary prefix stands for /opt/arete (versions/<v>, current,
previous), the agent's state dir is owned by another user (``nobody``), and the
updater's restart and status commands are a small script (``agentctl.py``) that stops
the running agent by PID and starts ``PREFIX/current/bin/arete agent run`` against a
real broker, and reports whether that process still runs. Every version is this
checkout built with another version number (tests/fixtures/builds.py), installed by pip
from the wheels of a signed release with no index; the broken ones exit at start or
never take a sample.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete import version
from arete.payloads import UpdatePhase, UpdateState
from arete.release import public_key_text
from edge_agent.health import HealthReport
from edge_agent.update_files import UpdateFiles, UpdateRequest
from tests.fixtures.agent import FAST_ENV
from tests.fixtures.broker import Broker
from tests.fixtures.builds import build_version, release_wheels, signed_release
from tests.fixtures.hosts import wheelhouse
from tests.fixtures.procs import wait_for

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (state dir owned by nobody)"),
]

A, B, EXITS, SILENT = version.__version__, "0.1.1", "0.1.2", "0.1.3"
NOBODY = 65534

AGENTCTL = """
import os, signal, subprocess, sys, time
prefix, config, state, log, pidfile = sys.argv[2:7]
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False
pid = int(open(pidfile).read()) if os.path.exists(pidfile) else 0
if sys.argv[1] == "status":
    up = pid and alive(pid)
    print(f"ActiveState={'active' if up else 'failed'}\\nSubState={'running' if up else 'failed'}")
    print("NRestarts=0")
    sys.exit(0)
if pid and alive(pid):
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
env = {**os.environ, "ARETE_AGENT_STATE_DIR": state}
with open(log, "ab") as out:
    proc = subprocess.Popen([os.path.join(prefix, "current", "bin", "arete"), "agent", "run",
                             "--config", config], stdout=out, stderr=out, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
open(pidfile, "w").write(str(proc.pid))
"""


@dataclass
class Versions:
    house: Path
    wheels: dict[str, Path]  # version -> arete wheel
    venv_a: Path  # version A installed once, linked into each test's layout


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    house = wheelhouse()
    wheels = {
        A: build_version(A),
        B: build_version(B),
        EXITS: build_version(EXITS, "exits"),
        SILENT: build_version(SILENT, "silent"),
    }
    venv_a = tmp_path_factory.mktemp("venv") / A
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", str(venv_a)], check=True, timeout=300)
    links = tmp_path_factory.mktemp("links-a")
    for wheel in release_wheels(wheels[A], house, A):
        os.symlink(wheel, links / wheel.name)
    subprocess.run(
        [
            str(venv_a / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--disable-pip-version-check",
            "--find-links",
            str(links),
            f"arete[agent]=={A}",
        ],
        check=True,
        timeout=600,
    )
    return Versions(house, wheels, venv_a)


@dataclass
class Host:
    """A temporary /opt/arete with version A current and its agent running."""

    prefix: Path
    state: Path
    config: Path
    key: Ed25519PrivateKey
    versions: Versions
    pidfile: Path
    log: Path
    script: Path

    @property
    def files(self) -> UpdateFiles:
        return UpdateFiles(self.state)

    def ctl(self, action: str) -> list[str]:
        """agentctl.py's argv: restart or status the agent of this layout."""
        fixed = [self.prefix, self.config, self.state, self.log, self.pidfile]
        return [sys.executable, str(self.script), action, *map(str, fixed)]

    def link(self, name: str) -> str:
        return os.readlink(self.prefix / name)

    def installed(self) -> list[str]:
        return sorted(path.name for path in (self.prefix / "versions").iterdir())

    def agent_pid(self) -> int:
        return int(self.pidfile.read_text())

    def health(self) -> HealthReport | None:
        try:
            return HealthReport(**json.loads((self.state / "health.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def wait_healthy(self, version: str, timeout: float = 60) -> HealthReport:
        seen: list[HealthReport] = []

        def healthy() -> bool:
            report = self.health()
            if report is not None and report.version == version:
                seen.append(report)
            return bool(seen)

        wait_for(healthy, timeout, f"health.json of {version}\n{self.log_text()}", step=0.2)
        return seen[0]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def spool(self, version: str, *, wheels: list[Path] | None = None) -> Path:
        """The agent's part: the signed release in updates/<version>/, owned by the agent."""
        wheel = self.versions.wheels[version]
        if wheels is None:
            wheels = release_wheels(wheel, self.versions.house, version)
        made = signed_release(self.key, version, wheels, self.state / "updates" / version)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(self.state)], check=True)
        return made

    def request(self, version: str | None, *, deadline: float = 60, command: str = "c1") -> None:
        self.files.write_request(
            UpdateRequest(
                version=version,
                rollback=version is None,
                from_version=A,
                command_id=command,
                health_deadline_s=deadline,
                requested_at=time.time(),
            )
        )

    def updater(self) -> list[str]:
        return [
            str(self.versions.venv_a / "bin" / "arete"),
            "agent",
            "updater",
            "--config",
            str(self.config),
            "--prefix",
            str(self.prefix),
            "--state-dir",
            str(self.state),
            "--restart-command",
            shlex.join(self.ctl("restart")),
            "--status-command",
            shlex.join(self.ctl("status")),
            "--poll-s",
            "0.2",
        ]

    def run_updater(self, timeout: float = 300) -> UpdateState:
        done = subprocess.run(
            self.updater(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **FAST_ENV},
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{self.log_text()}"
        return self.state_file()

    def state_file(self) -> UpdateState:
        state = self.files.read_state()
        assert state is not None
        return state


@pytest.fixture
def host(versions: Versions, broker: Broker, tmp_path: Path) -> Iterator[Host]:
    prefix, state = tmp_path / "opt", tmp_path / "state"
    (prefix / "versions").mkdir(parents=True)
    os.symlink(versions.venv_a, prefix / "versions" / A)
    os.symlink(f"versions/{A}", prefix / "current")
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    key = Ed25519PrivateKey.generate()
    config = broker.add_agent("upd")
    text = config.read_text()
    assert "update" not in tomllib.loads(text), text
    public = public_key_text(key.public_key())
    config.write_text(f'{text}\n[update]\nenabled = true\nrelease_keys = ["{public}"]\n')
    script = tmp_path / "agentctl.py"
    script.write_text(AGENTCTL)
    made = Host(
        prefix, state, config, key, versions, tmp_path / "agent.pid", tmp_path / "agent.log", script
    )
    subprocess.run(made.ctl("restart"), check=True, timeout=30, env={**os.environ, **FAST_ENV})
    try:
        made.wait_healthy(A)
        yield made
    finally:
        if made.pidfile.exists():  # the agent this test's script started, by its PID
            _stop(int(made.pidfile.read_text()))


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not _alive(pid), 10, "the agent to stop", step=0.1)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def test_an_update_is_installed_beside_switched_and_kept_once_healthy_even_after_a_kill(
    host: Host,
) -> None:
    host.spool(B)
    host.request(B)
    # kill -9 the updater in the middle of pip: the next start removes the half-made
    # venv and installs again.
    first = subprocess.Popen(
        host.updater(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **FAST_ENV},
    )
    try:
        wait_for((host.prefix / "versions" / B / "bin").is_dir, 120, "the venv to appear")
        assert host.state_file().phase == UpdatePhase.INSTALLING
    finally:
        first.kill()
        first.wait(10)
    assert host.link("current") == f"versions/{A}"  # nothing switched yet
    old_agent = host.agent_pid()

    state = host.run_updater()

    assert state.phase == UpdatePhase.HEALTHY, state
    assert (state.from_version, state.to_version, state.command_id) == (A, B, "c1")
    assert host.link("current") == f"versions/{B}"
    assert host.link("previous") == f"versions/{A}"
    assert host.agent_pid() != old_agent
    report = host.wait_healthy(B)
    assert report.pid == host.agent_pid()
    assert not host.files.request.exists()
    # state.json belongs to the agent's user, who reads it
    assert (host.files.state.stat().st_uid, host.files.state.stat().st_gid) == (NOBODY, NOBODY)
    assert host.installed() == [A, B]

    # rollback: back to the previous version, no install
    host.request(None, command="c2")
    back = host.run_updater()
    assert back.phase == UpdatePhase.HEALTHY, back
    assert (back.from_version, back.to_version) == (B, A)
    assert host.link("current") == f"versions/{A}"
    assert host.link("previous") == f"versions/{B}"
    host.wait_healthy(A)


def test_a_version_that_exits_at_start_is_rolled_back_and_the_old_one_runs_again(
    host: Host,
) -> None:
    host.spool(EXITS)
    host.request(EXITS, deadline=90)
    started = time.monotonic()
    state = host.run_updater()
    assert state.phase == UpdatePhase.ROLLED_BACK, state
    assert state.reason == "the new version did not start", state
    assert time.monotonic() - started < 90  # seen failing, not waited out
    assert "broken build: exits at start" in host.log_text()
    assert host.link("current") == f"versions/{A}"
    host.wait_healthy(A)
    assert not host.files.request.exists()


def test_a_version_that_never_samples_is_rolled_back_when_its_window_ends(host: Host) -> None:
    host.spool(SILENT)
    host.request(SILENT, deadline=12)
    state = host.run_updater()
    assert state.phase == UpdatePhase.ROLLED_BACK, state
    assert state.reason == "no healthy report in 12 s", state
    assert host.link("current") == f"versions/{A}"
    assert not (host.prefix / "previous").exists()  # only a healthy update sets it
    host.wait_healthy(A)


def test_tampered_unsigned_or_unknown_releases_are_refused_before_anything_is_installed(
    host: Host,
) -> None:
    wheels = [host.versions.wheels[B]]
    release = host.spool(B, wheels=wheels)
    wheel = release / wheels[0].name
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01
    wheel.write_bytes(bytes(data))
    host.request(B)
    state = host.run_updater()
    assert state.phase == UpdatePhase.FAILED, state
    assert str(state.reason).startswith("tampered:"), state

    signed = host.spool(B, wheels=wheels)
    document = json.loads((signed / "release.json").read_text())
    document["sig"] = ""
    (signed / "release.json").write_text(json.dumps(document))
    host.request(B, command="c2")
    assert str(host.run_updater().reason).startswith("unsigned:")

    host.key = Ed25519PrivateKey.generate()  # not the key in the agent config
    host.spool(B, wheels=wheels)
    host.request(B, command="c3")
    assert str(host.run_updater().reason).startswith("unknown_key:")

    assert host.installed() == [A]
    assert host.link("current") == f"versions/{A}"
    assert not host.files.request.exists()


def test_an_install_that_fails_leaves_no_half_made_venv_and_switches_nothing(
    host: Host,
) -> None:
    host.spool(B, wheels=[host.versions.wheels[B]])  # signed, but its dependencies missing
    host.request(B)
    state = host.run_updater()
    assert state.phase == UpdatePhase.FAILED, state
    assert str(state.reason).startswith("install_failed:"), state
    assert host.installed() == [A]
    assert host.link("current") == f"versions/{A}"
    assert not (host.prefix / "staging").exists() or not any((host.prefix / "staging").iterdir())
