"""Two control-plane replicas (web API + maestro each) on one data dir, as behind the
load-balancing proxy: a command sent through one is found through the other."""

from __future__ import annotations

from collections.abc import Callable

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role


def test_replica_b_finds_the_command_and_audit_entry_sent_through_replica_a(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    a = api_server(maestro_options={"replica": "a"})
    b = api_server(maestro_options={"replica": "b"})
    start_agent("a1")
    on_a, on_b = a.client(Role.OPERATOR), b.client(Role.OPERATOR)
    wait_for(lambda: on_a.get("/agents/a1").status_code == 200, 20, "a1 known to replica a")

    sent = on_a.post("/agents/a1/command?wait=true", json={"name": "metrics", "timeout": 10})
    assert sent.status_code == 200, sent.text
    command_id = sent.json()["id"]
    assert (a.settings.data_dir / "maestro" / "b.db").exists()

    found = on_b.get(f"/commands/{command_id}")
    assert found.status_code == 200, found.text
    assert found.json()["state"] == "ok"
    assert found.json()["actor"] == "user:operator"
    assert command_id in [c["id"] for c in on_b.get("/commands").json()]
    history = on_b.get(f"/commands/{command_id}/history").json()
    assert history[-1]["state"] == "ok"
    audit = on_b.get("/audit", params={"actor": "user:operator"}).json()
    issued = [e["detail"]["command_id"] for e in audit if e["action"] == "command.issue"]
    assert issued == [command_id]
