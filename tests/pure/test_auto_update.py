"""Automatic rollouts per label group: when one starts, and when it does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maestro.errors import ConfigError
from web_api.auto_update import GroupState, decide, older
from web_api.settings import AutoUpdateGroup, load_control

WEB = AutoUpdateGroup(selector={"role": "web"}, every_s=300)


def view(agent_id: str, version: str | None, role: str = "web") -> dict[str, Any]:
    return {"id": agent_id, "version": version, "labels": {"role": role}}


def test_a_group_agent_behind_the_newest_release_starts_a_rollout_every_period_at_most() -> None:
    state = GroupState()
    views = [view("w1", "0.2.0"), view("w2", "0.1.0"), view("d1", "0.1.0", role="db")]
    assert decide(WEB, state, newest="0.2.0", views=views, job_state=None, now=1000) == "0.2.0"
    # Looked again within the period: nothing, whatever the fleet shows.
    assert decide(WEB, state, newest="0.2.0", views=views, job_state=None, now=1200) is None
    assert decide(WEB, state, newest="0.2.0", views=views, job_state=None, now=1300) == "0.2.0"


def test_nothing_starts_when_the_group_is_current_or_only_other_agents_are_behind() -> None:
    views = [view("w1", "0.2.0"), view("d1", "0.1.0", role="db")]
    assert decide(WEB, GroupState(), newest="0.2.0", views=views, job_state=None, now=1) is None
    ahead = [view("w1", "0.3.0")]
    assert decide(WEB, GroupState(), newest="0.2.0", views=ahead, job_state=None, now=1) is None
    assert decide(WEB, GroupState(), newest=None, views=views, job_state=None, now=1) is None


def test_no_second_rollout_while_one_of_the_group_runs() -> None:
    state = GroupState()
    views = [view("w1", "0.1.0")]
    assert decide(WEB, state, newest="0.2.0", views=views, job_state="running", now=1) is None


def test_a_version_whose_rollout_failed_is_not_retried_but_a_newer_one_is() -> None:
    state = GroupState(job_id="job-1", job_version="0.2.0")
    views = [view("w1", "0.1.0")]
    assert decide(WEB, state, newest="0.2.0", views=views, job_state="failed", now=1) is None
    assert state.given_up == {"0.2.0"}
    assert decide(WEB, state, newest="0.2.0", views=views, job_state=None, now=400) is None
    assert decide(WEB, state, newest="0.3.0", views=views, job_state=None, now=800) == "0.3.0"


def test_versions_that_cannot_be_compared_are_never_behind() -> None:
    assert older("0.1.0", "0.2.0")
    assert not older("0.2.0", "0.2.0")
    assert not older("loadgen", "0.2.0")
    assert not older(None, "0.2.0")


def test_groups_come_from_the_web_table_of_control_toml_and_a_typo_is_refused(
    tmp_path: Path,
) -> None:
    config = tmp_path / "control.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[web]\n'
        'auto_update = [{selector = {role = "web"}, every_s = 300, batch_size = 5}]\n'
    )
    web, _ = load_control(config)
    assert web.auto_update == (
        AutoUpdateGroup(selector={"role": "web"}, every_s=300, batch_size=5),
    )
    config.write_text(f'data_dir = "{tmp_path}"\n[web]\nauto_update = [{{every = 300}}]\n')
    with pytest.raises(ConfigError, match=r"auto_update\.0\.every"):
        load_control(config)
