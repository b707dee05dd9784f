"""Per-channel send limits: never more than N sends in any W seconds, no needless waits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from maestro.notify.ratelimit import RateLimit, acquire


def send_times(limit: RateLimit, wanted: list[float]) -> list[float]:
    """When each wanted send actually goes out, waiting as the dispatcher does."""
    sent: list[float] = []
    now = 0.0
    for at in wanted:
        now = max(now, at)
        while True:
            limit, wait = acquire(limit, now)
            if wait <= 0:
                break
            now += wait
        sent.append(now)
    return sent


def test_telegram_one_message_a_second_per_chat() -> None:
    times = send_times(RateLimit(1, 1.0), [0.0] * 4)
    assert times == [0.0, 1.0, 2.0, 3.0]


def test_discord_five_per_two_seconds_then_waits_for_the_window() -> None:
    times = send_times(RateLimit(5, 2.0), [0.0] * 7)
    assert times == [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0]


def test_under_the_limit_nothing_waits() -> None:
    times = send_times(RateLimit(5, 2.0), [0.0, 1.0, 2.5, 4.0])
    assert times == [0.0, 1.0, 2.5, 4.0]


def test_a_pause_holds_every_send_until_it_ends() -> None:
    limit = RateLimit(5, 2.0).pause(10.0)
    _, wait = acquire(limit, 4.0)
    assert wait == 6.0
    assert send_times(limit, [0.0, 0.0]) == [10.0, 10.0]


@given(
    limit=st.integers(min_value=1, max_value=10),
    window=st.floats(min_value=0.1, max_value=10.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=60),
)
def test_never_more_than_the_limit_in_any_window(
    limit: int, window: float, gaps: list[float]
) -> None:
    wanted: list[float] = []
    at = 0.0
    for gap in gaps:
        at += gap
        wanted.append(at)
    times = send_times(RateLimit(limit, window), wanted)
    for index in range(limit, len(times)):
        assert times[index] - times[index - limit] >= window - 1e-9
    assert all(sent >= want for sent, want in zip(times, wanted, strict=True))
