"""The ``docker_ps`` and ``docker_restart`` commands, through the Docker Engine API.

The docker SDK is optional (``pip install 'arete[docker]'``) and imported on first use.
Every way this can go wrong ends as a typed :class:`CommandFailed` whose message says
what the user needs to know: no SDK, no engine at that address, no such container, the
engine refused, or the engine did not answer in time. Any engine that speaks the Docker
API works (Docker, Podman's ``podman system service``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

from arete.commands import (
    ContainerInfo,
    DockerPsArgs,
    DockerPsResult,
    DockerRestartArgs,
    DockerRestartResult,
)
from edge_agent.errors import CommandFailed
from edge_agent.settings import DockerSettings

SHORT_ID: Final = 12  # as ``docker ps`` shows ids
MAX_TEXT: Final = 256  # ShortStr in the contract
_DEFAULT_SOCKET: Final = "unix:///var/run/docker.sock"

T = TypeVar("T")


async def docker_ps(args: DockerPsArgs, settings: DockerSettings) -> DockerPsResult:
    """List containers (running ones, or all of them with ``args.all``)."""

    def listing(client: Any) -> DockerPsResult:
        # One list call; the engine's summary already has the state and "Up 3 hours".
        rows = client.api.containers(all=args.all)
        return DockerPsResult(containers=[_info(row) for row in rows])

    return await _with_engine(settings, listing)


async def docker_restart(args: DockerRestartArgs, settings: DockerSettings) -> DockerRestartResult:
    """Restart one container (by name or id); the engine waits ``args.timeout_s`` for it
    to stop before killing it."""

    def restart(client: Any) -> DockerRestartResult:
        container = client.containers.get(args.container)
        # The SDK extends the HTTP timeout by the stop timeout for this call.
        container.restart(timeout=args.timeout_s)
        container.reload()
        return DockerRestartResult(
            id=container.id[:SHORT_ID],
            name=_clip(container.name),
            state=_clip(container.status),
        )

    return await _with_engine(settings, restart, container=args.container)


async def _with_engine(
    settings: DockerSettings, work: Callable[[Any], T], container: str | None = None
) -> T:
    if not settings.enabled:
        raise CommandFailed("not_allowed", "docker commands are disabled on this agent")
    # In the thread: the first import of the SDK (and requests) takes about 100 ms.
    return await asyncio.to_thread(_call, settings, work, container)


def _call(settings: DockerSettings, work: Callable[[Any], T], container: str | None) -> T:
    try:
        import docker
        import docker.errors
        import requests.exceptions
    except ImportError:
        raise CommandFailed(
            "docker_unavailable", "the docker SDK is not installed (pip install 'arete[docker]')"
        ) from None

    where = _engine_address(settings)
    try:
        # Both connect: the SDK asks the engine for its API version first.
        if settings.url is None:
            client = docker.from_env(timeout=settings.timeout_s)
        else:
            client = docker.DockerClient(base_url=settings.url, timeout=settings.timeout_s)
    except docker.errors.DockerException as exc:
        raise CommandFailed(
            "docker_unavailable", f"no Docker engine reachable at {where}: {exc}"
        ) from None
    try:
        return work(client)
    except docker.errors.NotFound:
        raise CommandFailed("not_found", f"no container named or with id {container!r}") from None
    except docker.errors.APIError as exc:
        raise CommandFailed("docker_error", f"engine refused: {exc.explanation or exc}") from None
    except requests.exceptions.Timeout:
        raise CommandFailed(
            "timeout", f"the Docker engine at {where} did not answer in time"
        ) from None
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        raise CommandFailed(
            "docker_unavailable", f"lost the Docker engine at {where}: {exc}"
        ) from None
    finally:
        client.close()


def _info(row: dict[str, Any]) -> ContainerInfo:
    names = row.get("Names") or []
    image = str(row.get("Image") or row.get("ImageID") or "")
    if image.startswith("sha256:"):  # untagged: show the short image id, as docker ps does
        image = image.removeprefix("sha256:")[:SHORT_ID]
    return ContainerInfo(
        id=str(row.get("Id", ""))[:SHORT_ID],
        name=_clip(names[0].lstrip("/") if names else ""),
        image=_clip(image),
        state=_clip(str(row.get("State") or "")),
        status=_clip(str(row.get("Status") or "")),
    )


def _engine_address(settings: DockerSettings) -> str:
    if settings.url is not None:
        return settings.url
    default = "npipe:////./pipe/docker_engine" if sys.platform == "win32" else _DEFAULT_SOCKET
    return os.environ.get("DOCKER_HOST") or f"{default} (the default; DOCKER_HOST is unset)"


def _clip(text: str) -> str:
    return text[:MAX_TEXT]
