from __future__ import annotations

from arete.backoff import Backoff


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low = Backoff(0.5, 8.0, rand=lambda: 0.0)
    high = Backoff(0.5, 8.0, rand=lambda: 1.0)
    assert [low.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(1.0, 30.0, rand=lambda: 1.0)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 1.0


def test_a_fleet_does_not_reconnect_in_lockstep() -> None:
    delays = {round(Backoff(1.0, 30.0).next(), 6) for _ in range(50)}
    assert len(delays) > 40
