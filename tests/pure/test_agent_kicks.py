"""Repeated closes right after connecting mean another client uses the agent's identity."""

from __future__ import annotations

from edge_agent.kicks import WINDOW_S, KickWatch


def test_three_accepted_connections_closed_in_a_row_raise_the_suspicion_once() -> None:
    watch = KickWatch()
    assert watch.lost(0.0) is False
    assert watch.lost(1.0) is False
    assert watch.lost(2.0) is True  # the moment to log it
    assert watch.lost(3.0) is False  # said once, still suspected
    assert watch.suspected(3.0)


def test_a_failed_connection_attempt_means_an_outage_not_a_second_client() -> None:
    watch = KickWatch()
    watch.lost(0.0)
    watch.lost(1.0)
    watch.connect_failed()  # broker restarting, link cut
    assert watch.lost(2.0) is False
    assert not watch.suspected(2.0)


def test_the_suspicion_ends_once_the_connection_stays_up_for_the_window() -> None:
    watch = KickWatch()
    for t in (0.0, 30.0, 60.0):
        watch.lost(t)
    assert watch.suspected(61.0)
    assert not watch.suspected(60.0 + WINDOW_S + 1)
    for t in (1000.0, 1001.0):
        assert watch.lost(t) is False
    assert watch.lost(1002.0) is True  # a new episode is logged again
