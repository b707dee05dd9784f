"""A machine dies (``kill -9``: the broker publishes its Will) and the operator removes
its agent at once: the outage is not paged (the removal resolves it quietly), while the
same death of an agent that stays is paged once. A restarted maestro does not bring
the removed agent back, nor page it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import FakeDiscord
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.procs import wait_for

GROUP_WAIT_S = 5.0  # what is due for one agent waits this long before it is sent


def test_an_agent_removed_right_after_its_machine_died_is_not_paged(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    fake_discord: FakeDiscord,
    reliability: Reliability,
) -> None:
    options = {
        "notify": {"discord": {"webhook_url": fake_discord.webhook_url}, "retry_min_s": 0.2},
        "alerts": {"group_wait_s": GROUP_WAIT_S},
    }
    maestro = maestro_thread(**options)
    doomed, kept = start_agent("a1"), start_agent("a2")
    maestro.wait_state("a1", "online", timeout=20)
    maestro.wait_state("a2", "online", timeout=20)

    doomed.signal(signal.SIGKILL)  # both machines die: the broker publishes both Wills
    kept.signal(signal.SIGKILL)
    maestro.wait_state("a2", "offline", timeout=10)
    began = time.monotonic()
    broker.remove_agent("a1")  # within the group wait of a1's agent_offline page
    wait_for(lambda: "a1" not in maestro.states(), 10, "the maestro forgets a1")
    forgotten_s = time.monotonic() - began
    wait_for(lambda: len(fake_discord.delivered()) >= 1, 20, "a2's page")
    time.sleep(GROUP_WAIT_S + 1)  # a page for a1 would be out by now
    pages = [str(page.get("content")) for page in fake_discord.delivered()]

    maestro.stop()
    restarted = maestro_thread(**options)
    wait_for(lambda: "a2" in restarted.states(), 10, "a2 known after the restart")
    time.sleep(GROUP_WAIT_S + 1)
    after_restart = [str(p.get("content")) for p in fake_discord.delivered()][len(pages) :]
    reliability.record(
        "agent kill -9 then removed at once (agents remove within the page's group wait)",
        detection_s=forgotten_s,
        lost=0,
        duplicates=0,
        pages_expected=1,
        pages_sent=len(pages) + len(after_restart),
        notes=f"the maestro forgot a1 {forgotten_s:.1f} s after agents remove began; the "
        "agent killed alongside and kept (a2) is the one page; none for a1, none after a "
        "maestro restart",
    )
    assert len(pages) == 1, pages
    assert "a2 (" in pages[0], "the agent that stays is paged"  # e.g. "Areté: a2 (1 firing)"
    assert "a1" not in restarted.states(), "its saved state is gone"
    assert after_restart == [], "nothing is paged after a restart (a2 was paged already)"
