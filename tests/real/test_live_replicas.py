"""Two control-plane replicas split the ingest through shared subscriptions; a browser's
websocket on ONE of them still gets every live sample of the agent it follows, and each
sample is stored once (maestro.live_feed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from maestro.app import Maestro
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import port_open, wait_for
from web_api.auth.roles import Role

SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"
FOLLOW_S = 5.0


def maestro_of(api: ApiServer) -> Maestro:
    app: Any = api.server.config.app
    maestro: Maestro = app.state.arete.maestro
    return maestro


def stored(db: Path, agent_id: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return [row[0] for row in conn.execute(SEQS, (agent_id,))]


def test_a_websocket_on_one_replica_gets_every_sample_once_each_stored_once(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    a = api_server(maestro_options={"replica": "a"})
    b = api_server(maestro_options={"replica": "b"})
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.25"})
    on_a = a.client(Role.VIEWER)
    wait_for(lambda: on_a.get("/agents/a1").status_code == 200, 20, "a1 known to replica a")
    m = maestro_of(a)
    topic = m.topics.metrics("a1")
    url = f"{a.ws_url}/ws?token={a.tokens[Role.VIEWER]}"
    seen_plain: list[int] = []

    async def follow() -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"subscribe": ["a1"]}))
            end = time.monotonic() + FOLLOW_S
            while (left := end - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    frame = json.loads(await asyncio.wait_for(ws.recv(), left))
                    if frame["kind"] == "metrics":
                        frames.append(frame["data"])
            assert m.link.live_topics == {topic}  # the plain subscription, while followed
            seen_plain.append(m.live.plain_messages)
            await ws.send(json.dumps({"unsubscribe": ["a1"]}))
            await asyncio.sleep(1.0)  # the broker handles the UNSUBSCRIBE
            assert m.link.live_topics == set()
            assert m.live.followed() == set()
            seen_plain.append(m.live.plain_messages)
            await asyncio.sleep(1.5)
            seen_plain.append(m.live.plain_messages)
        return frames

    frames = asyncio.run(follow())
    seqs = [f["seq"] for f in frames]
    assert len(seqs) >= FOLLOW_S / 0.25 * 0.6, f"too few samples live: {seqs}"
    # Every sample, in order, once: not the half that replica a's share brings.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert all(f["agent"] == "a1" and "cpu" in f["values"] for f in frames)
    assert seen_plain[0] > 0, "nothing came through the plain subscription"
    assert seen_plain[2] == seen_plain[1], "the broker still sends after the unsubscribe"

    data = a.settings.data_dir / "maestro"
    in_a, in_b = stored(data / "a.db", "a1"), stored(data / "b.db", "a1")
    assert in_a, "replica a stored no share"
    assert in_b, "replica b stored no share: the ingest was not split"
    both = in_a + in_b
    assert len(both) == len(set(both)), "a sample stored twice"
    wait_for(
        lambda: set(seqs) <= set(stored(data / "a.db", "a1") + stored(data / "b.db", "a1")),
        10,
        "every sample shown live to be stored",
    )
    assert maestro_of(b).live.followed() == set()  # nobody follows on replica b


def test_every_live_sample_again_after_the_broker_lost_its_sessions(
    broker: Broker,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    a = api_server(maestro_options={"replica": "a"})
    b = api_server(maestro_options={"replica": "b"})
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "0.25"})
    on_a = a.client(Role.VIEWER)
    wait_for(lambda: on_a.get("/agents/a1").status_code == 200, 20, "a1 known to replica a")
    m, other = maestro_of(a), maestro_of(b)
    url = f"{a.ws_url}/ws?token={a.tokens[Role.VIEWER]}"

    async def follow() -> tuple[list[int], int]:
        seqs: list[int] = []

        async def read(ws: websockets.ClientConnection) -> None:
            while True:
                frame = json.loads(await ws.recv())
                if frame["kind"] == "metrics":
                    seqs.append(frame["data"]["seq"])

        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"subscribe": ["a1"]}))
            reader = asyncio.create_task(read(ws))
            await asyncio.sleep(1.0)
            assert broker.proc is not None
            broker.proc.popen.kill()  # the broker wrapper
            broker.proc.wait(5)
            # Mosquitto gets SIGTERM as its parent dies: it saves its sessions, then goes.
            await asyncio.to_thread(
                wait_for, lambda: not port_open(broker.port, broker.host), 10, "broker gone"
            )
            await asyncio.sleep(0.5)
            # Its persistence file gone too: the broker comes back without any session.
            (broker.data_dir / "broker" / "persistence" / "mosquitto.db").unlink(missing_ok=True)
            broker.start()
            await asyncio.to_thread(
                wait_for,
                lambda: m.link.connected and other.link.connected,
                20,
                "both replicas back",
            )
            before = other.ingest.samples
            await asyncio.to_thread(
                wait_for,
                lambda: other.ingest.samples >= before + 3,
                20,
                "replica b to take its share again",
            )
            share_of_b, mark = other.ingest.samples, len(seqs)
            await asyncio.sleep(4.0)  # live again, both replicas taking their share
            reader.cancel()
            assert m.link.live_topics == {m.topics.metrics("a1")}
            return seqs[mark:], other.ingest.samples - share_of_b

    seqs, share_of_b = asyncio.run(follow())
    assert share_of_b > 0, "replica b took no share after the restart"
    assert len(seqs) >= 5, seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
