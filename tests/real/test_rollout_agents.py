"""A rollout against REAL agents: the maestro publishes a release from its store, each
agent fetches and verifies it and hands it to its host's updater (played by
``FakeUpdater``: it answers request.json with a state.json); the updater's phase reaches
the rollout through the agent's status, with the command's id."""

from __future__ import annotations

from collections.abc import Callable

from arete.payloads import UpdatePhase
from arete.version import __version__
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import KEY, NEXT, FakeUpdater, store_release, update_env
from web_api.auth.roles import Role


def test_a_canary_whose_updater_rolls_back_fails_the_rollout_before_the_next_agent(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    broker: Broker,
) -> None:
    api = api_server(maestro_options=store_release(broker.data_dir, KEY, NEXT))
    operator = api.client(Role.OPERATOR)
    agents = {name: start_agent(name, env=update_env()) for name in ("ru1", "ru2")}
    updaters = [FakeUpdater(a.state_dir, phase=UpdatePhase.ROLLED_BACK) for a in agents.values()]
    try:

        def ready() -> bool:
            listed = operator.get("/releases").json()["items"]
            views = [operator.get(f"/agents/{name}").json() for name in agents]
            online = all(v.get("state") == "online" and v.get("metrics") for v in views)
            return online and [r["published"] for r in listed] == [True]

        wait_for(ready, 30, "both agents online and the release on the broker", step=0.25)
        created = operator.post(
            "/jobs/update", json={"version": NEXT, "agents": ["ru1", "ru2"], "canary": 1}
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        def finished() -> bool:
            return operator.get(f"/jobs/{job_id}").json()["finished_at"] is not None

        wait_for(finished, 60, "the rollout's end", step=0.25)
    finally:
        for updater in updaters:
            updater.close()
    job = operator.get(f"/jobs/{job_id}").json()
    assert job["state"] == "failed", job
    phases = {a["id"]: a for a in job["rollout"]["agents"]}
    assert phases["ru1"]["phase"] == "rolled_back"
    assert phases["ru1"]["reason"].startswith("updater: rolled_back")
    assert phases["ru2"]["phase"] == "waiting"  # never sent: the canary failed
    [command] = operator.get("/commands", params={"job": job_id}).json()
    assert (command["agent"], command["state"]) == ("ru1", "ok")
    assert operator.get(f"/commands/{command['id']}").json()["result"] == {
        "state": "handed_over",
        "from_version": __version__,
        "to_version": NEXT,
    }
    shown = operator.get("/agents/ru1").json()
    assert shown["version"] == __version__
    assert shown["update"]["phase"] == "rolled_back"
    assert shown["update"]["command_id"] == command["id"]
    assert operator.get("/agents/ru2").json()["update"] is None
