"""Tier 3: Mission Control's Jobs, Users, Rules and Notifiers pages in real Chromium
against a real web API, maestro, broker and agents. Saves a screenshot of each page."""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.browser import CHROMIUM, DIST, SHOTS, logged_in
from tests.fixtures.chat_servers import FakeDiscord
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]


def open_page(page: Page, name: str) -> None:
    page.get_by_test_id(f"nav-{name}").click()
    expect(page).to_have_url(re.compile(f"#/{name}$"))


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_job_by_label_selector_runs_on_the_matching_agents_and_finishes(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    agents = {
        agent_id: start_agent(agent_id, env={"ARETE_AGENT_LABELS__ROLE": role})
        for agent_id, role in (("web1", "web"), ("web2", "web"), ("db1", "db"))
    }
    api = api_server()
    page = logged_in(browser, api)
    for agent_id in ("web1", "web2", "db1"):
        expect(page.get_by_test_id(f"agent-card-{agent_id}")).to_have_attribute(
            "data-state", "online", timeout=20_000
        )
    open_page(page, "jobs")
    page.get_by_test_id("job-selector").fill("role=web")
    expect(page.get_by_test_id("job-matches")).to_have_text("2 agents match")
    page.get_by_test_id("job-selector").fill("role")
    expect(page.get_by_test_id("job-matches")).to_have_text('"role" is not key=value')
    page.get_by_test_id("job-selector").fill("role=web")
    page.get_by_test_id("job-command").select_option("metrics")
    page.get_by_test_id("job-batch").fill("1")
    page.get_by_test_id("job-max-failures").fill("0")
    page.get_by_test_id("job-start").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Run metrics on 2 agents?")
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("job-note")).to_have_text("Started metrics on 2 agents.")
    job = page.locator("[data-testid^='job-job-']").first
    expect(job).to_have_attribute("data-state", "done", timeout=30_000)
    expect(job.get_by_test_id("job-summary")).to_have_text("done: 2 ok")
    expect(job.get_by_test_id("job-counts")).to_contain_text("2 of 2 finished")
    expect(job.get_by_test_id("job-counts")).to_contain_text("web1, web2")
    [listed] = api.client(Role.VIEWER).get("/jobs").json()
    assert sorted(listed["agents"]) == ["web1", "web2"], "db1 is not picked by role=web"

    # A second job whose first agent does not answer: abort it from the page.
    agents["web1"].signal(signal.SIGSTOP)
    try:
        page.get_by_test_id("job-timeout").fill("30")
        page.get_by_test_id("job-start").click()
        page.get_by_test_id("confirm-ok").click()
        running = page.locator("[data-testid^='job-job-'][data-state='running']")
        expect(running).to_have_count(1, timeout=10_000)
        expect(running.get_by_test_id("job-summary")).to_have_text("running: 0 of 2 done")
        running.locator("[data-testid^='job-abort-']").click()
        newest = page.locator("[data-testid^='job-job-']").first
        expect(newest).to_have_attribute("data-state", "stopped", timeout=10_000)
        expect(newest.get_by_test_id("job-summary")).to_have_text("stopped: aborted by user:admin")
    finally:
        agents["web1"].signal(signal.SIGCONT)
    sent = api.client(Role.VIEWER).get("/commands", params={"agent": "web2"}).json()
    assert len([c for c in sent if c["job_id"]]) == 1, "only the first job reached web2"
    shot(page, "jobs")


def test_an_admin_adds_a_user_and_a_token_then_revokes_the_token(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    page = logged_in(browser, api)
    open_page(page, "users")
    expect(page.get_by_test_id("user-admin")).to_be_visible()
    page.get_by_test_id("user-name").fill("ci-bot")
    page.get_by_test_id("user-role").select_option("operator")
    page.get_by_test_id("user-add").click()
    expect(page.get_by_test_id("users-note")).to_have_text("Added ci-bot (operator).")
    first = page.get_by_test_id("token-secret-value").inner_text()
    me = httpx.get(f"{api.base_url}/auth/me", headers={"Authorization": f"Bearer {first}"})
    assert me.json() == {"user": "ci-bot", "role": "operator", "must_change_password": False}

    tokens = page.get_by_test_id("tokens-ci-bot")
    expect(tokens.locator("li[data-testid^='token-']")).to_have_count(1)
    page.get_by_test_id("token-label").fill("deploy pipeline")
    page.get_by_test_id("token-add").click()
    expect(page.get_by_test_id("users-note")).to_have_text("New token for ci-bot.")
    second = page.get_by_test_id("token-secret-value").inner_text()
    assert second != first
    assert second.startswith("arete_")
    token_id = second.split("_")[1]
    row = page.get_by_test_id(f"token-{token_id}")
    expect(row).to_contain_text("deploy pipeline")
    shot(page, "users")
    auth = {"Authorization": f"Bearer {second}"}
    assert httpx.get(f"{api.base_url}/auth/me", headers=auth).status_code == 200

    page.get_by_test_id(f"token-revoke-{token_id}").click()
    expect(page.get_by_test_id("users-note")).to_have_text(f"Revoked token {token_id} of ci-bot.")
    expect(row).to_have_count(0)
    assert httpx.get(f"{api.base_url}/auth/me", headers=auth).status_code == 401
    still = httpx.get(f"{api.base_url}/auth/me", headers={"Authorization": f"Bearer {first}"})
    assert still.status_code == 200, "the other token still works"
    expect(page.get_by_test_id("user-role-admin")).to_be_disabled()  # the last admin


def test_rules_with_thresholds_a_silence_of_any_duration_and_notifier_health(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    *,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "db_disk"\nfield = "disk"\nop = ">="\nthreshold = 85\n'
        'for_s = 30\nseverity = "critical"\nlabels = { role = "db" }\n'
    )
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__RULES_FILE", str(rules))
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__CPU_HIGH__THRESHOLD", "80")
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__DISK_HIGH__ENABLED", "false")
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__DISCORD__WEBHOOK_URL", fake_discord.webhook_url)
    agent = start_agent("r1")
    api = api_server()
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-r1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    open_page(page, "rules")
    expect(page.get_by_test_id("rule-condition-cpu_high")).to_have_text(
        "Fires when cpu > 80 % for 5 min"
    )
    expect(page.get_by_test_id("rule-condition-agent_offline")).to_have_text(
        "Fires when agent offline"
    )
    expect(page.get_by_test_id("rule-disk_high")).to_have_attribute("data-enabled", "false")
    custom = page.get_by_test_id("rule-db_disk")  # from the rules file
    expect(custom).to_contain_text("custom")
    expect(custom).to_contain_text("critical")
    expect(custom).to_contain_text("agents with role=db")
    expect(page.get_by_test_id("rule-condition-db_disk")).to_have_text(
        "Fires when disk >= 85 % for 30 s"
    )
    expect(page.get_by_test_id("rule-summary-cpu_high")).to_have_text(
        "<agent>: CPU at <value>% (over 80%)"
    )

    page.get_by_test_id("silence-agent").select_option("r1")
    page.get_by_test_id("silence-rule").select_option("cpu_high")
    page.get_by_test_id("silence-duration").fill("forever")
    page.get_by_test_id("silence-add").click()
    expect(page.get_by_test_id("rules-note")).to_contain_text("Duration: e.g. 30m")
    page.get_by_test_id("silence-duration").fill("1h30m")
    page.get_by_test_id("silence-reason").fill("kernel upgrade")
    page.get_by_test_id("silence-add").click()
    expect(page.get_by_test_id("rules-note")).to_have_text(
        "Silenced cpu_high on r1 for 1 h 30 min."
    )
    expect(page.get_by_test_id("rules-silences")).to_contain_text("kernel upgrade")
    expect(page.get_by_test_id("silence-ends-in")).to_have_text(
        re.compile(r"ends in 1 h (29|30) min")
    )
    [silence] = api.client(Role.VIEWER).get("/silences").json()
    assert (silence["agent"], silence["rule"]) == ("r1", "cpu_high")
    assert silence["ends_at"] - silence["starts_at"] == pytest.approx(5400)
    shot(page, "rules")

    open_page(page, "notifiers")
    card = page.get_by_test_id("notifier-discord")
    expect(card).to_have_attribute("data-status", "ok")
    expect(card.get_by_test_id("notifier-sentence")).to_have_text("Ready: nothing sent yet.")
    expect(card.get_by_test_id("notifier-queued")).to_have_text("0")

    agent.kill9()  # agent_offline fires and is paged to Discord
    wait_for(lambda: bool(fake_discord.delivered()), 30, "the page to Discord")
    page.reload()
    expect(card.get_by_test_id("notifier-sentence")).to_have_text(
        re.compile(r"Working: last delivery (just now|\d+ s ago)\."), timeout=15_000
    )
    shot(page, "notifiers")

    open_page(page, "alerts")  # the alert's own Silence button takes any duration too
    alert = page.locator("[data-testid^='alert-'][data-phase='firing']").first
    expect(alert).to_be_visible(timeout=15_000)
    page.get_by_test_id("alerts-silence-for").fill("3h")
    button = alert.locator("[data-testid^='alert-silence-']")
    expect(button).to_have_text("Silence 3 h")
    button.click()
    expect(page.get_by_test_id("alerts-note")).to_have_text("Silenced agent_offline on r1 for 3 h")
    lengths = [
        s["ends_at"] - s["starts_at"] for s in api.client(Role.VIEWER).get("/silences").json()
    ]
    assert sorted(round(x) for x in lengths) == [5400, 10800]


def test_the_agent_page_takes_a_sample_now_and_runs_a_shell_command(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    start_agent("s1")
    api = api_server()
    page = logged_in(browser, api)
    card = page.get_by_test_id("agent-card-s1")
    expect(card).to_have_attribute("data-state", "online", timeout=20_000)
    card.click()
    more = page.get_by_test_id("more-commands")
    more.get_by_test_id("cmd-metrics").click()
    sample = more.get_by_test_id("command-result").first
    expect(sample.get_by_test_id("command-state")).to_have_attribute(
        "data-state", "ok", timeout=20_000
    )
    more.get_by_test_id("cmd-shell").click()
    expect(more.get_by_test_id("shell-problem")).to_have_text("Type a command to run.")
    more.get_by_test_id("shell-line").fill("echo hello-from-$((40 + 2)); echo oops >&2; exit 3")
    more.get_by_test_id("cmd-shell").click()
    output = more.get_by_test_id("shell-output")
    expect(output).to_have_attribute("data-exit-code", "3", timeout=20_000)
    expect(output.get_by_test_id("shell-stdout")).to_have_text("hello-from-42")
    expect(output.get_by_test_id("shell-stderr")).to_have_text("oops")
    shot(page, "agent-commands")


def test_the_containers_tab_says_in_a_sentence_why_docker_is_unavailable(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    tmp_path: Path,
) -> None:
    socket = tmp_path / "no-engine.sock"
    start_agent("c1", env={"ARETE_AGENT_DOCKER__URL": f"unix://{socket}"})
    api = api_server()
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-c1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(f"{api.base_url}/#/agents/c1/containers")
    state = page.get_by_test_id("containers-state")
    expect(state).to_have_attribute("data-state", "failed", timeout=20_000)
    expect(state).to_have_text(
        f"No Docker engine reachable at unix://{socket}: its socket does not exist"
        " (is the engine running?)."
    )
    text = state.inner_text()
    assert "Error(" not in text
    assert "docker_unavailable" not in text, "a sentence, not an error code"


def test_a_shell_job_runs_its_command_line_where_each_agents_allowlist_lets_it(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    start_agent("sh1", env={"ARETE_AGENT_LABELS__ROLE": "batch"})
    # This agent refuses shell strings: the job cannot make it run one.
    start_agent(
        "sh2",
        env={
            "ARETE_AGENT_LABELS__ROLE": "batch",
            "ARETE_AGENT_SHELL__ALLOW_SHELL_STRINGS": "false",
        },
    )
    api = api_server()
    page = logged_in(browser, api)
    for agent_id in ("sh1", "sh2"):
        expect(page.get_by_test_id(f"agent-card-{agent_id}")).to_have_attribute(
            "data-state", "online", timeout=20_000
        )
    open_page(page, "jobs")
    page.get_by_test_id("job-command").select_option("shell")
    page.get_by_test_id("job-selector").fill("role=batch")
    page.get_by_test_id("job-batch").fill("2")
    page.get_by_test_id("job-max-failures").fill("1")
    page.get_by_test_id("job-start").click()
    expect(page.get_by_test_id("job-note")).to_have_text("Type a command to run.")
    page.get_by_test_id("job-shell-command").fill("echo job-$((6*7))")
    page.get_by_test_id("job-shell-timeout").fill("0")
    page.get_by_test_id("job-start").click()
    expect(page.get_by_test_id("job-note")).to_have_text("The time limit is 1 to 3600 seconds.")
    page.get_by_test_id("job-shell-timeout").fill("20")
    page.get_by_test_id("job-start").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text(
        'Run shell "echo job-$((6*7))" on 2 agents?'
    )
    page.get_by_test_id("confirm-ok").click()
    job = page.locator("[data-testid^='job-job-']").first
    expect(job.get_by_test_id("job-title")).to_have_text('shell "echo job-$((6*7))"')
    expect(job).to_have_attribute("data-state", "done", timeout=30_000)
    expect(job.get_by_test_id("job-summary")).to_have_text("done: 1 ok, 1 failed")
    sent = {
        c["agent"]: c
        for c in api.client().get("/commands").json()
        if c["job_id"] and c["name"] == "shell"
    }
    assert sent["sh1"]["state"] == "ok"
    ran = api.client().get(f"/commands/{sent['sh1']['id']}").json()
    assert ran["result"]["stdout"].strip() == "job-42"
    assert sent["sh1"]["args"] == {"command": "echo job-$((6*7))", "timeout_s": 20}
    assert sent["sh2"]["state"] == "rejected", "sh2's allowlist refuses shell strings"
    # Each agent's answer on the page: sh2 says why in a sentence, sh1 shows its output.
    job.locator("[data-testid^='job-answers-']").click()
    refused = job.get_by_test_id("job-result-sh2")
    expect(refused).to_have_attribute("data-state", "rejected")
    expect(refused.get_by_test_id("job-result-summary")).to_have_text(
        "Shell strings are disabled on this agent."
    )
    job.get_by_test_id("job-result-open-sh1").click()
    expect(job.get_by_test_id("job-result-sh1").get_by_test_id("shell-stdout")).to_have_text(
        "job-42"
    )

    # docker_restart needs its container, named as Docker would take it.
    page.get_by_test_id("job-command").select_option("docker_restart")
    page.get_by_test_id("job-container").fill("no such/name")
    page.get_by_test_id("job-start").click()
    expect(page.get_by_test_id("job-note")).to_contain_text("A container name is letters")
    shot(page, "jobs-shell")
