"""Fault tier: secrets from Infisical (a local server speaking its documented API) under
rotation and outage, with a real broker, real agents and the web API's own maestro.

1. The Discord webhook is rotated: the old token is revoked at Discord and the new URL
   put in Infisical. After the next refresh, an agent_offline page goes to the new
   webhook exactly once; nothing is sent to the revoked one.
2. Infisical goes away: the maestro keeps the secrets it has, stays connected to the
   broker, and the next page is still delivered exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Reliability
from tests.fixtures import chat_servers
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import DISCORD_WEBHOOK_ID, FakeDiscord
from tests.fixtures.infisical import CLIENT_ID, CLIENT_SECRET, ENVIRONMENT, PROJECT, FakeInfisical
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

NEW_TOKEN = "rotated-webhook-token-0123456789abcdefghij"


def test_a_rotated_webhook_is_used_at_once_and_an_infisical_outage_loses_no_page(  # noqa: PLR0917 - fixtures
    broker: Broker,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    fake_discord: FakeDiscord,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    infisical = FakeInfisical().start()
    try:
        creds = tmp_path / "credentials"
        creds.mkdir(mode=0o700)
        for name, value in (("id", CLIENT_ID), ("secret", CLIENT_SECRET)):
            (creds / name).write_text(value)
            (creds / name).chmod(0o400)
        infisical.set("MQTT_PASSWORD", broker.maestro_password)
        infisical.set("DISCORD_WEBHOOK", fake_discord.webhook_url)
        for key, value in {
            "CREDENTIALS_DIRECTORY": str(creds),
            "ARETE_MAESTRO_SECRETS__PROVIDER": "infisical",
            "ARETE_MAESTRO_SECRETS__SITE_URL": infisical.url,
            "ARETE_MAESTRO_SECRETS__PROJECT_ID": PROJECT,
            "ARETE_MAESTRO_SECRETS__ENVIRONMENT": ENVIRONMENT,
            "ARETE_MAESTRO_SECRETS__CLIENT_ID_FILE": "$CREDENTIALS_DIRECTORY/id",
            "ARETE_MAESTRO_SECRETS__CLIENT_SECRET_FILE": "$CREDENTIALS_DIRECTORY/secret",
            "ARETE_MAESTRO_SECRETS__REFRESH_S": "1",
            "ARETE_MAESTRO_MQTT__PASSWORD": "infisical:MQTT_PASSWORD",
            "ARETE_MAESTRO_NOTIFY__DISCORD__WEBHOOK_URL": "infisical:DISCORD_WEBHOOK",
            "ARETE_MAESTRO_NOTIFY__RETRY_MIN_S": "1",
            "ARETE_MAESTRO_NOTIFY__RETRY_MAX_S": "2",
        }.items():
            monkeypatch.setenv(key, value)
        first, second = start_agent("h1"), start_agent("h2")
        api = api_server(rate_per_user=100.0, burst_per_user=200)
        viewer = api.client(Role.VIEWER)
        for agent_id in ("h1", "h2"):

            def online(agent: str = agent_id) -> bool:
                return bool(viewer.get(f"/agents/{agent}").json().get("state") == "online")

            wait_for(online, 20, f"{agent_id} online")

        # 1. Rotation: Discord revokes the old token, Infisical gets the new URL.
        monkeypatch.setattr(chat_servers, "DISCORD_WEBHOOK_TOKEN", NEW_TOKEN)
        new_url = (
            f"http://127.0.0.1:{fake_discord.port}/api/webhooks/{DISCORD_WEBHOOK_ID}/{NEW_TOKEN}"
        )
        reads = infisical.requests["secret"]
        rotated_at = time.monotonic()
        infisical.set("DISCORD_WEBHOOK", new_url)
        # Two refreshes later the new value was read (and applied on the maestro's loop).
        wait_for(lambda: infisical.requests["secret"] >= reads + 4, 10, "two refreshes")
        picked_up = time.monotonic() - rotated_at
        first.kill9()
        wait_for(lambda: len(fake_discord.delivered()) >= 1, 30, "the page", step=0.2)
        time.sleep(2)  # a second delivery would show here
        statuses = [call.status for call in fake_discord.calls("execute")]
        assert statuses == [200], statuses  # none to the revoked webhook, no duplicate
        reliability.record(
            "Discord webhook rotated in Infisical (old token revoked), then an agent dies",
            detection_s=picked_up,
            lost=0,
            duplicates=len(fake_discord.delivered()) - 1,
            pages_expected=1,
            pages_sent=len(fake_discord.delivered()),
            notes="refresh_s = 1; the next page goes to the new webhook, none to the old one",
        )

        # 2. Infisical goes away: old values kept, broker link up, pages still sent.
        infisical.stop()
        time.sleep(2.5)  # at least two failed refreshes
        assert viewer.get("/agents/h2").json().get("state") == "online"
        second.kill9()
        wait_for(lambda: len(fake_discord.delivered()) >= 2, 30, "the second page", step=0.2)
        time.sleep(2)
        delivered = fake_discord.delivered()
        assert [call.status for call in fake_discord.calls("execute")] == [200, 200]
        assert all("h2" in str(page) for page in delivered[1:]), delivered
        reliability.record(
            "Infisical unreachable while the maestro runs, then an agent dies",
            detection_s=None,
            lost=0,
            duplicates=len(delivered) - 2,
            pages_expected=1,
            pages_sent=len(delivered) - 1,
            notes="failed re-reads keep the secrets in hand; broker link and notifier unaffected",
        )
    finally:
        infisical.stop()
