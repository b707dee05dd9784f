"""docker_update for real: podman's Docker API pulling from Debian's docker-registry on
loopback (tests/fixtures/registry.py), through the handler and through a real agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from arete.commands import DockerUpdateArgs, DockerUpdateResult
from arete.payloads import ReplyState
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker_update import docker_update
from edge_agent.settings import DockerSettings
from tests.fixtures.agent import AgentProc, ReadyAgent, states
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import wait_for
from tests.fixtures.registry import LocalRegistry
from web_api.auth.roles import Role

OK = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]
FAILED = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.FAILED]


def update(
    registry: LocalRegistry, container: str, **args: object
) -> DockerUpdateResult | CommandFailed:
    settings = DockerSettings(url=registry.engine.url, timeout_s=30)
    try:
        return asyncio.run(docker_update(DockerUpdateArgs(container=container, **args), settings))  # type: ignore[arg-type]
    except CommandFailed as failure:
        return failure


def updated(registry: LocalRegistry, container: str, **args: object) -> DockerUpdateResult:
    outcome = update(registry, container, **args)
    assert not isinstance(outcome, CommandFailed), f"{outcome.code}: {outcome.message}"
    return outcome


def refused(registry: LocalRegistry, container: str, **args: object) -> CommandFailed:
    outcome = update(registry, container, **args)
    assert isinstance(outcome, CommandFailed), f"update of {container!r} did not fail: {outcome}"
    return outcome


def same_configuration(before: dict[str, Any], after: dict[str, Any]) -> None:
    for section, key in [
        ("HostConfig", "PortBindings"),
        ("HostConfig", "RestartPolicy"),
        ("HostConfig", "Binds"),
        ("Config", "Labels"),
    ]:
        assert after[section][key] == before[section][key], key
    assert "GREETING=hello" in after["Config"]["Env"]


def test_a_newer_image_replaces_the_container_with_the_same_configuration(
    registry: LocalRegistry,
) -> None:
    with registry.app() as (name, tag, v1):
        before = registry.info(name)
        written = registry.engine.run("exec", name, "sh", "-c", "echo kept > /data/note")
        assert written.returncode == 0, written.stderr
        v2 = registry.push(tag, version="2")
        assert v2 != v1
        result = updated(registry, name, stable_s=1)
        assert result.state == "updated"
        assert (result.name, result.image) == (name, registry.ref(tag))
        assert result.old_image_id == v1.removeprefix("sha256:")[:12]
        assert result.new_image_id == v2.removeprefix("sha256:")[:12]
        after = registry.info(name)
        assert after["Image"] == v2, "the container runs the pulled image"
        assert after["Id"] != before["Id"]
        assert str(after["Id"]).startswith(result.id)
        assert after["State"]["Running"] is True
        assert registry.version_in(name) == "2"
        same_configuration(before, after)
        note = registry.engine.run("exec", name, "cat", "/data/note")
        assert note.stdout == "kept\n", "the bind mount came along"
        assert not registry.exists(f"{name}.arete-old"), "the old container is removed"


def test_an_image_that_exits_at_start_is_rolled_back(registry: LocalRegistry) -> None:
    with registry.app() as (name, tag, v1):
        before = registry.info(name)
        registry.push(tag, version="2", cmd=["/bin/sh", "-c", "exit 3"])
        failure = refused(registry, name, stable_s=5)
        assert failure.code == "unhealthy"
        # "it exited with code 3", or, once its restart policy restarted it,
        # "it exited ... and its restart policy restarted it" (podman then shows code 0)
        assert "the new container failed its trial: it exited" in failure.message
        assert isinstance(failure.result, DockerUpdateResult)
        assert failure.result.state == "rolled_back"
        after = registry.info(name)
        assert after["Id"] == before["Id"], "the previous container itself is back"
        assert after["Image"] == v1
        assert after["State"]["Running"] is True
        assert registry.version_in(name) == "1"
        same_configuration(before, after)
        assert not registry.exists(f"{name}.arete-old")


def test_an_image_whose_command_cannot_start_is_rolled_back(registry: LocalRegistry) -> None:
    # No published port: podman 4.3's API service keeps the port of a container that
    # failed to start bound until it restarts, so the old one could not have it back
    # (docs/updates.md).
    with registry.app(publish=False) as (name, tag, v1):
        before = registry.info(name)
        registry.push(tag, version="2", cmd=["/bin/no-such-program"])
        failure = refused(registry, name, stable_s=5)
        assert failure.code == "update_failed", failure.message
        assert failure.message.startswith("the new container could not be started: ")
        assert isinstance(failure.result, DockerUpdateResult)
        assert failure.result.state == "rolled_back"
        after = registry.info(name)
        assert after["Id"] == before["Id"]
        assert after["Image"] == v1
        assert after["State"]["Running"] is True
        assert not registry.exists(f"{name}.arete-old")


def test_a_failing_health_check_rolls_back_and_a_passing_one_updates(
    registry: LocalRegistry,
) -> None:
    with registry.app(health=True) as (name, tag, v1), registry.health_checks(name):
        registry.push(tag, version="2", healthcheck=["false"])
        started = time.monotonic()
        failure = refused(registry, name, health_timeout_s=30)
        assert time.monotonic() - started < 20, "unhealthy ends the trial, not the timeout"
        assert failure.code == "unhealthy"
        assert "health check reports unhealthy" in failure.message
        assert registry.info(name)["Image"] == v1
        assert registry.version_in(name) == "1"

        v3 = registry.push(tag, version="3", healthcheck=["true"])
        result = updated(registry, name, health_timeout_s=30)
        assert result.state == "updated"
        assert "healthy" in result.message
        assert registry.info(name)["Image"] == v3
        assert registry.version_in(name) == "3"


def test_the_same_image_is_up_to_date_and_nothing_is_recreated(registry: LocalRegistry) -> None:
    with registry.app() as (name, _, v1):
        before = registry.info(name)
        result = updated(registry, name)
        assert result.state == "up_to_date"
        assert result.old_image_id == result.new_image_id == v1.removeprefix("sha256:")[:12]
        after = registry.info(name)
        assert after["Id"] == before["Id"]
        assert after["State"]["StartedAt"] == before["State"]["StartedAt"]


def test_an_unknown_container_is_not_found(registry: LocalRegistry) -> None:
    failure = refused(registry, "no-such-container")
    assert failure.code == "not_found"
    assert failure.message == "no container named or with id 'no-such-container'"


def test_a_container_left_renamed_by_an_interrupted_update_is_restored(
    registry: LocalRegistry,
) -> None:
    with registry.app() as (name, _, v1):
        old_id = registry.info(name)["Id"]
        # What an update killed between its rename and its create leaves: no <name>.
        assert registry.engine.run("stop", "-t", "0", name).returncode == 0
        assert registry.engine.run("rename", name, f"{name}.arete-old").returncode == 0
        result = updated(registry, name)
        assert result.state == "up_to_date"
        assert f"restored {name}" in result.message
        after = registry.info(name)
        assert after["Id"] == old_id
        assert after["Image"] == v1
        assert after["State"]["Running"] is True
        assert not registry.exists(f"{name}.arete-old")


def test_docker_update_through_a_real_agent(
    ready_agent: ReadyAgent, broker: Broker, registry: LocalRegistry
) -> None:
    _, commander = ready_agent(env={"ARETE_AGENT_DOCKER__URL": registry.engine.url})
    with registry.app() as (name, tag, v1):
        v2 = registry.push(tag, version="2")
        replies = commander.run("docker_update", {"container": name, "stable_s": 1}, timeout=90)
        assert states(replies) == OK, replies[-1].error
        assert replies[-1].result["state"] == "updated"
        assert replies[-1].result["new_image_id"] == v2.removeprefix("sha256:")[:12]
        assert registry.info(name)["Image"] == v2

        registry.push(tag, version="3", cmd=["/bin/sh", "-c", "exit 7"])
        broken = commander.run("docker_update", {"container": name, "stable_s": 5}, timeout=90)
        assert states(broken) == FAILED
        assert broken[-1].error is not None
        assert broken[-1].error.code == "unhealthy"
        assert broken[-1].result["state"] == "rolled_back"
        assert registry.info(name)["Image"] == v2, "back on the image that worked"
        assert v1 != v2


def test_a_docker_update_job_over_two_agents_succeeds(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    registry: LocalRegistry,
) -> None:
    # Both agents drive the same engine: the first updates the container, the second
    # finds it up to date; the job ends done with both ok.
    env = {"ARETE_AGENT_DOCKER__URL": registry.engine.url}
    start_agent("a1", env=env)
    start_agent("a2", env=env)
    api = api_server()
    admin = api.client(Role.ADMIN)  # docker_update is not among the operator's commands

    def online() -> bool:
        listed = admin.get("/agents", params={"state": "online"}).json()
        return sorted(a["id"] for a in listed) == ["a1", "a2"]

    wait_for(online, 30, "both agents online", step=0.2)
    with registry.app() as (name, tag, _):
        v2 = registry.push(tag, version="2")
        created = admin.post(
            "/jobs",
            json={
                "name": "docker_update",
                "args": {"container": name, "stable_s": 1},
                "agents": ["a1", "a2"],
                "batch_size": 1,
            },
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        wait_for(
            lambda: admin.get(f"/jobs/{job_id}").json()["state"] != "running",
            90,
            "the job to end",
            step=0.5,
        )
        job = admin.get(f"/jobs/{job_id}").json()
        assert job["state"] == "done", job
        assert job["counts"] == {"ok": 2}
        assert registry.info(name)["Image"] == v2
