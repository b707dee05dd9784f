"""The agent's estimate of the maestro's clock: the smallest recent offset wins."""

from __future__ import annotations

import pytest

from edge_agent.clock import WINDOW_S, MaestroClock


def test_no_observation_means_no_estimate() -> None:
    assert MaestroClock().offset(0.0) is None


def test_the_smallest_delay_seen_is_the_estimate() -> None:
    clock = MaestroClock()
    # Agent 30 s ahead; messages arrive 0.05 to 2 s after the maestro stamped them.
    for mono, delay in enumerate([2.0, 0.05, 0.7]):
        clock.observe(maestro_ts=1000.0 + mono, local_ts=1030.0 + mono + delay, monotonic=mono)
    assert clock.offset(3.0) == pytest.approx(30.05)


def test_old_observations_expire_so_a_corrected_clock_is_followed() -> None:
    clock = MaestroClock()
    clock.observe(maestro_ts=1000.0, local_ts=1000.0 - 3600, monotonic=0.0)  # 1 h behind
    clock.observe(maestro_ts=1100.0, local_ts=1100.1, monotonic=WINDOW_S - 1)  # NTP fixed it
    assert clock.offset(WINDOW_S - 1) == -3600.0
    assert clock.offset(WINDOW_S + 1) == pytest.approx(0.1)


def test_a_nonsense_stamp_is_ignored() -> None:
    clock = MaestroClock()
    clock.observe(maestro_ts=float("inf"), local_ts=1.0, monotonic=0.0)
    assert clock.offset(0.0) is None


def test_a_live_message_far_above_the_estimate_is_a_clock_step_followed_at_once() -> None:
    clock = MaestroClock()
    clock.observe(maestro_ts=1000.0, local_ts=1000.05, monotonic=0.0, live=True)
    # NTP steps the agent's clock 30 s forward: the old minimum would make every command
    # look 30 s older than it is.
    clock.observe(maestro_ts=1001.0, local_ts=1031.05, monotonic=1.0, live=True)
    assert clock.offset(1.0) == pytest.approx(30.05)


def test_a_command_far_above_the_estimate_is_only_a_late_one() -> None:
    clock = MaestroClock()
    clock.observe(maestro_ts=1000.0, local_ts=1000.05, monotonic=0.0, live=True)
    clock.observe(maestro_ts=1001.0, local_ts=1031.0, monotonic=1.0)  # queued 30 s
    assert clock.offset(1.0) == pytest.approx(0.05)
