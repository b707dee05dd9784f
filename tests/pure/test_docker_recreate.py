"""docker_update's decisions: the new container's configuration and the trial's verdict."""

from __future__ import annotations

from typing import Any

import pytest

from arete.commands import CommandName, DockerUpdateArgs
from edge_agent.dispatch import deadline_s
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker_recreate import (
    base_name,
    create_config,
    has_healthcheck,
    image_ref,
    judge,
    old_name,
    pull_error,
)
from edge_agent.settings import DockerSettings

OLD_ID = "f50c2cdb6072" + "0" * 52
IMAGE_CONFIG: dict[str, Any] = {
    "Env": ["PATH=/usr/bin:/bin"],
    "Cmd": ["/bin/sh", "-c", "serve"],
    "Entrypoint": None,
    "Labels": {"org.opencontainers.image.version": "1"},
    "ExposedPorts": {"9000/tcp": {}},
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000},
    "WorkingDir": "/srv",
}


def container(**config: Any) -> dict[str, Any]:
    return {
        "Id": OLD_ID,
        "Name": "/web",
        "Image": "sha256:" + "a" * 64,
        "Config": {
            "Hostname": OLD_ID[:12],
            "Image": "registry.local:5000/web:1",
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hello", f"HOSTNAME={OLD_ID[:12]}"],
            "Cmd": ["/bin/sh", "-c", "serve"],
            "Entrypoint": [],
            "Labels": {"org.opencontainers.image.version": "1", "team": "ops"},
            "ExposedPorts": {"9000/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 0},
            "WorkingDir": "/srv",
            **config,
        },
        "HostConfig": {
            "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "18080"}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Binds": ["/data:/data:rw"],
            "NetworkMode": "bridge",
            "Ulimits": [{"Name": "RLIMIT_NOFILE", "Soft": 1024, "Hard": 1024}],
        },
        "NetworkSettings": {"Networks": {"bridge": {"Aliases": [OLD_ID[:12]]}}},
        "State": {"Running": True, "Status": "running"},
    }


def test_the_new_container_keeps_what_the_user_set_and_takes_the_new_images_defaults() -> None:
    config = create_config(container(), {"Config": IMAGE_CONFIG}, "registry.local:5000/web:2")
    assert config["Image"] == "registry.local:5000/web:2"
    assert config["Env"] == ["GREETING=hello"], "the image's env and the old hostname go"
    assert config["Labels"] == {"team": "ops"}
    assert config["Cmd"] is None, "the image's command: the new image's applies"
    assert config["Entrypoint"] is None
    assert "Healthcheck" not in config, "the image's health check: the new image's applies"
    assert "WorkingDir" not in config
    assert "Hostname" not in config, "the engine's default hostname was the old id"
    assert config["ExposedPorts"] == {"8080/tcp": {}}, "published ports stay exposed"
    host = config["HostConfig"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "", "HostPort": "18080"}]}
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Binds"] == ["/data:/data:rw"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]
    assert "NetworkingConfig" not in config


def test_a_command_hostname_and_health_check_of_the_users_own_are_kept() -> None:
    mine = container(
        Cmd=["/bin/sh", "-c", "serve --fast"],
        Hostname="web-1",
        Healthcheck={"Test": ["CMD", "check"]},
    )
    config = create_config(mine, {"Config": IMAGE_CONFIG}, "web:2")
    assert config["Cmd"] == ["/bin/sh", "-c", "serve --fast"]
    assert config["Hostname"] == "web-1"
    assert config["Healthcheck"] == {"Test": ["CMD", "check"]}


def test_a_user_network_keeps_its_aliases_but_not_the_old_id() -> None:
    info = container()
    info["HostConfig"]["NetworkMode"] = "backend"
    info["NetworkSettings"]["Networks"] = {"backend": {"Aliases": [OLD_ID[:12], "api"]}}
    config = create_config(info, {"Config": IMAGE_CONFIG}, "web:2")
    assert config["NetworkingConfig"] == {"EndpointsConfig": {"backend": {"Aliases": ["api"]}}}


def test_the_reference_to_pull() -> None:
    assert image_ref(None, container()) == "registry.local:5000/web:1"
    assert image_ref("web:2", container()) == "web:2"
    for by_id in ("sha256:" + "b" * 64, "b" * 64, "0123456789ab"):
        with pytest.raises(CommandFailed) as failure:
            image_ref(None, container(Image=by_id))
        assert failure.value.code == "no_image_ref"


def test_old_names() -> None:
    assert old_name("web") == "web.arete-old"
    assert base_name("web.arete-old") == "web"
    assert base_name("web") is None


def test_a_pull_error_inside_the_engines_stream_is_found() -> None:
    stream = '{"status":"Pulling"}\n{"error":"manifest unknown","errorDetail":{}}\n'
    assert pull_error(stream) == "manifest unknown"
    assert pull_error('{"status":"Download complete"}\n') is None


ARGS = DockerUpdateArgs(container="web", health_timeout_s=30, stable_s=10)


def state(running: bool = True, health: str | None = None, **more: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"State": {"Running": running, "ExitCode": 3, **more}}
    if health is not None:
        info["State"]["Health"] = {"Status": health, "Log": [{"ExitCode": 1, "Output": "no\n"}]}
    return info


def test_the_trial_without_a_health_check_wants_it_running_stable_s() -> None:
    assert judge(state(), has_health=False, restarts=0, waited_s=3, args=ARGS) is None
    passed = judge(state(), has_health=False, restarts=0, waited_s=10, args=ARGS)
    assert passed is not None
    assert passed.ok
    exited = judge(state(running=False), has_health=False, restarts=0, waited_s=1, args=ARGS)
    assert exited is not None
    assert not exited.ok
    assert exited.reason == "it exited with code 3"
    crashed = {**state(), "RestartCount": 1}
    restarted = judge(crashed, has_health=False, restarts=0, waited_s=9, args=ARGS)
    assert restarted is not None
    assert not restarted.ok
    assert restarted.reason == "it exited with code 3 and its restart policy restarted it"


def test_the_trial_with_a_health_check_wants_healthy_in_time() -> None:
    starting = state(health="starting")
    assert judge(starting, has_health=True, restarts=0, waited_s=29, args=ARGS) is None
    late = judge(starting, has_health=True, restarts=0, waited_s=30, args=ARGS)
    assert late is not None
    assert not late.ok
    assert late.reason == "not healthy within 30 s (starting)"
    healthy = judge(state(health="healthy"), has_health=True, restarts=0, waited_s=1, args=ARGS)
    assert healthy is not None
    assert healthy.ok
    sick = judge(state(health="unhealthy"), has_health=True, restarts=0, waited_s=1, args=ARGS)
    assert sick is not None
    assert not sick.ok
    assert sick.reason == "its health check reports unhealthy (last check: exit 1, no)"
    assert has_healthcheck(starting)
    assert not has_healthcheck({"Config": {"Healthcheck": {"Test": ["NONE"]}}, "State": {}})


def test_the_agents_deadline_covers_pull_stops_and_trial() -> None:
    args = DockerUpdateArgs(container="web", health_timeout_s=1800, stop_timeout_s=600)
    settings = DockerSettings(timeout_s=10)
    assert deadline_s(CommandName.DOCKER_UPDATE, args, settings) > 300 + 1800 + 2 * 600
    small = DockerUpdateArgs(container="web")
    assert deadline_s(CommandName.DOCKER_UPDATE, small, settings) >= 600
