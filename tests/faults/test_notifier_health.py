"""Fault tier: a Discord outage as Mission Control's notifier health shows it.

Real broker, real agent, the web API's own maestro, and a Discord stand-in that answers
503 three times. While it fails, ``GET /notifiers`` says the channel is retrying, with
the reason and one notification queued; once Discord is back the page is delivered
exactly once and the channel is ``ok`` again with an empty queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.chat_servers import FakeDiscord, Reply
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role


def test_a_discord_outage_shows_as_retrying_then_the_page_arrives_once(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__DISCORD__WEBHOOK_URL", fake_discord.webhook_url)
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__RETRY_MIN_S", "1")
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__RETRY_MAX_S", "2")
    outage = Reply.discord_error(503, "upstream connect error")
    fake_discord.script("execute", outage, outage, outage)
    agent = start_agent("h1")
    api = api_server(rate_per_user=100.0, burst_per_user=200)
    operator = api.client(Role.OPERATOR)
    wait_for(
        lambda: api.client(Role.VIEWER).get("/agents/h1").json().get("state") == "online",
        20,
        "h1 online",
    )

    def channel() -> dict[str, Any]:
        answer = operator.get("/notifiers")
        assert answer.status_code == 200, answer.text
        [discord] = answer.json()["channels"]
        return dict(discord)

    killed = time.monotonic()
    agent.kill9()  # agent_offline fires: one page, which Discord refuses three times
    wait_for(lambda: channel()["status"] == "retrying", 30, "the channel seen retrying", step=0.2)
    detected = time.monotonic() - killed
    during = channel()
    assert during["queued"] == 1
    assert during["last_error"], "the reason of the retry is shown"
    assert "503" in during["last_error"]
    assert during["last_sent_at"] is None

    wait_for(
        lambda: channel()["status"] == "ok" and channel()["queued"] == 0, 30, "delivered", step=0.2
    )
    after = channel()
    assert after["last_sent_at"] is not None
    assert after["last_error"] is None
    assert (after["sent"], after["failed"]) == (1, 0)
    assert after["retried"] >= 1
    time.sleep(2)  # a second delivery of the same page would show here
    pages = fake_discord.delivered()
    assert len(pages) == 1, pages
    reliability.record(
        "Discord answers 503 three times while an agent_offline page is due",
        detection_s=detected,
        lost=0,
        duplicates=len(pages) - 1,
        pages_expected=1,
        pages_sent=len(pages),
        notes="GET /notifiers shows retrying with the 503 reason and 1 queued, then ok, 0 queued",
    )
