"""The docker handlers against a real Docker-API engine (podman) and against none."""

from __future__ import annotations

import asyncio
import http.server
import importlib.abc
import importlib.machinery
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from arete.commands import (
    CommandName,
    DockerPsArgs,
    DockerPsResult,
    DockerRestartArgs,
    DockerRestartResult,
)
from edge_agent.dispatch import deadline_s
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker import docker_ps, docker_restart
from edge_agent.settings import DockerSettings
from tests.fixtures.podman import IMAGE, PodmanEngine


def ps(settings: DockerSettings, *, include_stopped: bool = True) -> DockerPsResult:
    return asyncio.run(docker_ps(DockerPsArgs(all=include_stopped), settings))


def restart(settings: DockerSettings, container: str) -> DockerRestartResult | CommandFailed:
    try:
        return asyncio.run(
            docker_restart(DockerRestartArgs(container=container, timeout_s=1), settings)
        )
    except CommandFailed as failure:
        return failure


def restart_refused(settings: DockerSettings, container: str) -> CommandFailed:
    outcome = restart(settings, container)
    assert isinstance(outcome, CommandFailed), f"restart of {container!r} did not fail"
    return outcome


def test_docker_ps_lists_the_created_container(podman_engine: PodmanEngine) -> None:
    listing = ps(DockerSettings(url=podman_engine.url))
    ours = [c for c in listing.containers if c.name == podman_engine.container_name]
    assert len(ours) == 1
    container = ours[0]
    assert container.state == "created"
    assert container.status == "Created"
    assert container.image == IMAGE
    assert len(container.id) == 12
    int(container.id, 16)


def test_docker_ps_without_all_shows_only_running_containers(podman_engine: PodmanEngine) -> None:
    listing = ps(DockerSettings(url=podman_engine.url), include_stopped=False)
    assert podman_engine.container_name not in [c.name for c in listing.containers]


def test_engine_from_docker_host_when_no_url_is_configured(
    podman_engine: PodmanEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman_engine.url)
    names = [c.name for c in ps(DockerSettings()).containers]
    assert podman_engine.container_name in names


def test_restart_of_an_unknown_container_is_not_found(podman_engine: PodmanEngine) -> None:
    failure = restart_refused(DockerSettings(url=podman_engine.url), "no-such-container")
    assert failure.code == "not_found"
    assert failure.message == "no container named or with id 'no-such-container'"


def restarted(settings: DockerSettings, container: str) -> DockerRestartResult:
    outcome = restart(settings, container)
    assert not isinstance(outcome, CommandFailed), f"restart refused: {outcome.message}"
    return outcome


def test_restart_starts_a_created_container_and_says_it_runs(
    podman_engine: PodmanEngine,
) -> None:
    settings = DockerSettings(url=podman_engine.url)
    with podman_engine.container() as name:
        assert podman_engine.inspect(name, "{{.State.Running}}") == "false"
        outcome = restarted(settings, name)
        assert (outcome.name, outcome.state) == (name, "running")
        assert podman_engine.inspect(name, "{{.State.Running}}") == "true"
        listed = {c.name: c for c in ps(settings, include_stopped=False).containers}
        assert listed[name].id == outcome.id
        assert listed[name].state == "running"


def test_restart_of_a_running_container_stops_and_starts_it_again(
    podman_engine: PodmanEngine,
) -> None:
    settings = DockerSettings(url=podman_engine.url)
    state = "{{.State.Pid}} {{.State.StartedAt}}"
    with podman_engine.container(start=True) as name:
        pid_before, started_before = podman_engine.inspect(name, state).split(" ", 1)
        assert int(pid_before) > 0
        time.sleep(1.1)  # StartedAt is shown to the second in some formats
        outcome = restarted(settings, name)
        assert (outcome.name, outcome.state) == (name, "running")
        pid_after, started_after = podman_engine.inspect(name, state).split(" ", 1)
        assert pid_after != pid_before, "a new process runs the container"
        assert started_after != started_before, "its start time moved"
        assert podman_engine.inspect(name, "{{.State.Running}}") == "true"
        # It keeps running afterwards (did not exit at once after the start).
        time.sleep(0.5)
        assert podman_engine.inspect(name, "{{.State.Pid}}") == pid_after


def test_no_engine_at_the_url_is_docker_unavailable_at_once(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    started = time.monotonic()
    with pytest.raises(CommandFailed) as failure:
        ps(DockerSettings(url=url, timeout_s=5))
    assert time.monotonic() - started < 2
    assert failure.value.code == "docker_unavailable"
    assert failure.value.message == (
        f"no Docker engine reachable at {url}: its socket does not exist (is the engine running?)"
    ), "a sentence, not the SDK's nested exception reprs"
    restart = restart_refused(DockerSettings(url=url), "web")
    assert restart.code == "docker_unavailable"


def test_disabled_docker_commands_are_refused() -> None:
    with pytest.raises(CommandFailed) as failure:
        ps(DockerSettings(enabled=False, url="unix:///nonexistent.sock"))
    assert failure.value.code == "not_allowed"


def test_missing_docker_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # makes ``import docker`` fail
    with pytest.raises(CommandFailed) as failure:
        ps(DockerSettings(url="unix:///nonexistent.sock"))
    assert failure.value.code == "docker_unavailable"
    assert "pip install 'arete[docker]'" in failure.value.message


VERSION_BODY = b'{"ApiVersion": "1.41", "Version": "fake"}'


class _FakeEngine(http.server.BaseHTTPRequestHandler):
    """Answers the SDK's version probe; subclasses answer the rest."""

    def do_GET(self) -> None:
        if self.path == "/version":
            self.answer(200, VERSION_BODY)
        else:
            self.other()

    def other(self) -> None:
        raise NotImplementedError

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _HungEngine(_FakeEngine):
    """Never answers anything but the version probe."""

    release = threading.Event()

    def other(self) -> None:
        self.release.wait(30)


class _EmptyEngine(_FakeEngine):
    """Has no containers: every lookup is a 404, as Docker answers it."""

    def other(self) -> None:
        self.answer(404, b'{"message": "No such container: ' + self.path.encode() + b'"}')


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def fake_engine(path: Path, handler: type[_FakeEngine]) -> Iterator[str]:
    server = _UnixHTTPServer(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_engine_that_stops_answering_is_a_timeout(tmp_path: Path) -> None:
    try:
        with fake_engine(tmp_path / "hung.sock", _HungEngine) as url:
            started = time.monotonic()
            with pytest.raises(CommandFailed) as failure:
                ps(DockerSettings(url=url, timeout_s=0.5))
            assert time.monotonic() - started < 3
            assert failure.value.code == "timeout"
            assert "did not answer in time" in failure.value.message
    finally:
        _HungEngine.release.set()


def test_restart_of_a_container_the_engine_does_not_have_is_not_found(tmp_path: Path) -> None:
    # Needs no container runtime: the engine's 404 is all that matters.
    with fake_engine(tmp_path / "empty.sock", _EmptyEngine) as url:
        failure = restart_refused(DockerSettings(url=url), "no-such-container")
    assert failure.code == "not_found"
    assert failure.message == "no container named or with id 'no-such-container'"


class _RecordDockerImports(importlib.abc.MetaPathFinder):
    """Notes the thread that imports the docker SDK, then makes that import fail."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "docker" or fullname.startswith("docker."):
            self.threads.append(threading.current_thread())
            raise ImportError(fullname)
        return None


def test_the_docker_sdk_is_not_imported_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _RecordDockerImports()
    for name in [m for m in sys.modules if m == "docker" or m.startswith("docker.")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    monkeypatch.setattr(sys, "meta_path", [recorder, *sys.meta_path])
    with pytest.raises(CommandFailed) as failure:
        ps(DockerSettings(url="unix:///nonexistent.sock"))  # the loop runs in this thread
    assert failure.value.code == "docker_unavailable"
    assert recorder.threads
    assert threading.current_thread() not in recorder.threads


@pytest.mark.parametrize("client_timeout_s", [0.5, 10.0, 120.0, 1000.0])
def test_the_agents_deadline_outlasts_the_slowest_legitimate_docker_call(
    client_timeout_s: float,
) -> None:
    # docker.timeout_s has no upper bound. Each request may take its timeout to connect
    # and again to answer; restart's own request waits for the stop timeout on top.
    settings = DockerSettings(timeout_s=client_timeout_s)
    restart_args = DockerRestartArgs(container="web", timeout_s=600)
    restart_worst = 2 * (3 * client_timeout_s) + 2 * (client_timeout_s + restart_args.timeout_s)
    assert deadline_s(CommandName.DOCKER_RESTART, restart_args, settings) > restart_worst
    ps_worst = 2 * (2 * client_timeout_s)
    assert deadline_s(CommandName.DOCKER_PS, DockerPsArgs(), settings) > ps_worst
