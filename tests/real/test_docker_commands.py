"""The docker handlers against a real Docker-API engine (podman) and against none."""

from __future__ import annotations

import asyncio
import http.server
import socketserver
import sys
import threading
import time
from pathlib import Path

import pytest

from arete.commands import DockerPsArgs, DockerPsResult, DockerRestartArgs
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker import docker_ps, docker_restart
from edge_agent.settings import DockerSettings
from tests.fixtures.podman import IMAGE, PodmanEngine


def ps(settings: DockerSettings, *, include_stopped: bool = True) -> DockerPsResult:
    return asyncio.run(docker_ps(DockerPsArgs(all=include_stopped), settings))


def restart_refused(settings: DockerSettings, container: str) -> CommandFailed:
    with pytest.raises(CommandFailed) as failure:
        asyncio.run(docker_restart(DockerRestartArgs(container=container, timeout_s=1), settings))
    return failure.value


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


def test_restart_the_engine_refuses_is_docker_error(podman_engine: PodmanEngine) -> None:
    # No container can start in this sandbox (the runtime's setrlimit is refused, see
    # RECIPES.md), so the engine answers 500. On a host with a working engine the same
    # call succeeds and returns the container's new state.
    failure = restart_refused(DockerSettings(url=podman_engine.url), podman_engine.container_name)
    assert failure.code == "docker_error"
    assert failure.message.startswith("engine refused: ")
    assert len(failure.message) > len("engine refused: ")


def test_no_engine_at_the_url_is_docker_unavailable_at_once(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    started = time.monotonic()
    with pytest.raises(CommandFailed) as failure:
        ps(DockerSettings(url=url, timeout_s=5))
    assert time.monotonic() - started < 2
    assert failure.value.code == "docker_unavailable"
    assert failure.value.message.startswith(f"no Docker engine reachable at {url}")
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


class _HungEngine(http.server.BaseHTTPRequestHandler):
    """Answers the SDK's version probe, then never answers anything else."""

    release = threading.Event()

    def do_GET(self) -> None:
        if self.path != "/version":
            self.release.wait(30)
            return
        body = b'{"ApiVersion": "1.41", "Version": "hung"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_an_engine_that_stops_answering_is_a_timeout(tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    server = _UnixHTTPServer(str(path), _HungEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(CommandFailed) as failure:
            ps(DockerSettings(url=f"unix://{path}", timeout_s=0.5))
        assert time.monotonic() - started < 3
        assert failure.value.code == "timeout"
        assert "did not answer in time" in failure.value.message
    finally:
        _HungEngine.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
