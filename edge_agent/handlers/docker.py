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
            "docker_unavailable", f"no Docker engine reachable at {where}: {why(exc)}"
        ) from None
    try:
        return work(client)
    except docker.errors.NotFound:
        raise CommandFailed("not_found", f"no container named or with id {container!r}") from None
    except docker.errors.APIError as exc:
        raise CommandFailed("docker_error", f"the engine refused: {_explanation(exc)}") from None
    except requests.exceptions.Timeout:
        raise CommandFailed(
            "timeout", f"the Docker engine at {where} did not answer in time"
        ) from None
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        raise CommandFailed(
            "docker_unavailable", f"lost the Docker engine at {where}: {why(exc)}"
        ) from None
    finally:
        client.close()


def why(exc: BaseException) -> str:
    """Why the engine could not be reached, as a short phrase a user reads (never the
    SDK's exception text, which nests reprs like ``FileNotFoundError(2, ...)``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or item in seen:
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, *item.args])
    text = " ".join(str(e) for e in seen)
    kinds = {type(e) for e in seen}
    if FileNotFoundError in kinds or "No such file or directory" in text:
        return "its socket does not exist (is the engine running?)"
    if PermissionError in kinds or "Permission denied" in text:
        return "permission denied on its socket (the agent's user needs access to it)"
    if ConnectionRefusedError in kinds or "Connection refused" in text:
        return "the connection was refused (is the engine running?)"
    if ConnectionResetError in kinds or "Connection aborted" in text:
        return "the engine closed the connection"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "its host name does not resolve"
    return "it did not answer as a Docker engine does"


def _explanation(exc: Any) -> str:
    """The engine's own message (a sentence it wrote), else its HTTP status."""
    text = exc.explanation if isinstance(getattr(exc, "explanation", None), str) else ""
    if text:
        return text[:MAX_TEXT]
    status = getattr(exc, "status_code", None)
    return f"HTTP status {status}" if status else "no reason given"


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
