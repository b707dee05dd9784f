"""The I/O shell of a rollout job: feeds :class:`~web_api.rollout.Rollout` what the
registry shows and the commands' outcomes, sends the ``update`` commands it asks for.

Every :data:`TICK_S` the agents under way are read from the registry (their status:
state, version, ``update``; their newest sample's receive time); each command's final
record comes back through its own small task.

The gate needs a sample received after the switch, and the registry of this replica
knows only the samples of its share: with two replicas, Mosquitto's round robin over
the shared subscription can hand every sample of one agent to the other replica (two
agents at the same pace alternate). So the job follows the agents it judges through
the live feed (:mod:`maestro.live_feed`: a plain subscription per agent, up to its
``max_agents``) and takes the newest receive time of either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from arete.commands import CommandName
from maestro.commands.lifecycle import CommandState
from maestro.errors import CommandError, StoreError
from web_api.rollout import Rollout, Seen, Send

if TYPE_CHECKING:
    from maestro.app import Maestro
    from maestro.live_feed import Watcher
    from web_api.jobs import Job

log = logging.getLogger("arete.web.rollout")

TICK_S: Final = 0.5


def seen_now(
    maestro: Maestro, agents: Iterable[str], live: dict[str, float] | None = None
) -> dict[str, Seen]:
    """What the registry shows of ``agents``; ``live``: the newest receive time of each
    agent's samples seen through the live feed, where newer than the registry's."""
    registry = maestro.registry
    seen = {agent: Seen.from_view(registry.view(agent)) for agent in agents}
    for agent, rx in (live or {}).items():
        current = seen.get(agent)
        if current is not None and (current.sample_at is None or rx > current.sample_at):
            seen[agent] = dataclasses.replace(current, sample_at=rx)
    return seen


def _drain(watcher: Watcher, newest: dict[str, float]) -> None:
    """The receive time of the newest live sample of each followed agent, so far."""
    while not watcher.queue.empty():
        sample = watcher.queue.get_nowait()
        newest[sample.agent_id] = max(newest.get(sample.agent_id, 0.0), sample.rx_ts)


def known_release(maestro: Maestro, version: str) -> bool | None:
    """Whether the maestro's release store holds ``version``; None without a store.

    The store (``maestro.releases``, docs/updates.md) is optional: a maestro without one
    sends what it is asked and each agent refuses a release it cannot fetch."""
    store = getattr(maestro, "releases", None)
    listing: Callable[[], Iterable[Any]] | None = getattr(store, "releases", None)
    if listing is None:
        return None
    if version in {str(getattr(r, "version", r)) for r in listing()}:
        return True
    # Not in the last scan (every [releases] scan_interval_s): a release added a moment
    # ago (`arete release add`, then `arete fleet update`) must not be refused. Read the
    # store now, and have the publisher put a new release on the broker at once rather
    # than at its next scan, so the agents find it when the job's commands reach them.
    scan: Callable[[], Iterable[str]] | None = getattr(store, "scan", None)
    if scan is None or version not in set(scan()):
        return False
    publisher = getattr(maestro, "release_publisher", None)
    if publisher is not None:
        publisher.wake()
    return True


async def drive(maestro: Maestro, job: Job, tick_s: float = TICK_S) -> None:
    """Run ``job.rollout`` to its end (rollback included); the job mirrors its state."""
    rollout = job.rollout
    assert rollout is not None  # noqa: S101 - only update jobs come here
    waiting: set[asyncio.Task[None]] = set()
    newest: dict[str, float] = {}  # agent -> receive time of its newest live sample
    with maestro.live.watching() as watcher:
        try:
            while not rollout.ended:
                watched = rollout.watching()
                watcher.unfollow([a for a in watcher.agents if a not in watched])
                watcher.follow(watched)
                _drain(watcher, newest)
                live = {agent: newest[agent] for agent in watched if agent in newest}
                now = time.time()
                sends = rollout.step(seen_now(maestro, watched, live), now)
                for task in await _send_all(maestro, job, rollout, sends, now=now):
                    if task is not None:
                        waiting.add(task)
                        task.add_done_callback(waiting.discard)
                _mirror(job, rollout)
                if rollout.ended:
                    break
                await asyncio.sleep(tick_s)
        finally:
            for task in list(waiting):
                task.cancel()
            _mirror(job, rollout)


async def _send_all(
    maestro: Maestro, job: Job, rollout: Rollout, sends: list[Send], *, now: float
) -> list[asyncio.Task[None] | None]:
    """A batch's commands, recorded concurrently as a fan-out's are (one by one, each
    waiting for its store write, a batch of 100 took seconds on a busy machine)."""
    slots = asyncio.Semaphore(maestro.commands.settings.fanout_concurrency)

    async def one(send: Send) -> asyncio.Task[None] | None:
        async with slots:
            return await _send(maestro, job, rollout, send, now=now)

    return list(await asyncio.gather(*(one(send) for send in sends)))


async def _send(
    maestro: Maestro, job: Job, rollout: Rollout, send: Send, *, now: float
) -> asyncio.Task[None] | None:
    agent, args = send.agent, send.args
    try:
        record = await maestro.commands.send(
            agent, CommandName.UPDATE.value, args, actor=job.actor, job_id=job.id
        )
    except CommandError as exc:
        rollout.command_done(agent, False, f"{exc.code or 'refused'}: {exc}", now)
        return None
    except StoreError as exc:
        rollout.command_done(agent, False, f"store: {exc}", now)
        return None
    rollout.sent(agent, record.id, now)

    async def outcome() -> None:
        final = await maestro.commands.wait(record.id)
        if not final.is_final:
            return  # the health gate's own deadline decides
        ok = final.state is CommandState.OK
        reason = None if ok else f"{final.error_code or final.state.value}: {final.error_message}"
        rollout.command_done(agent, ok, reason, time.time())

    return asyncio.create_task(outcome(), name=f"{job.id}-{agent}")


def _mirror(job: Job, rollout: Rollout) -> None:
    if job.state == "running" or rollout.state != "running":
        job.state = rollout.state
    job.failures = rollout.failures
    job.stopped_reason = rollout.stop_reason or job.stopped_reason
