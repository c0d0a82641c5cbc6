"""`policy.restarts`: which ended children are restarted, after how long, and when the supervisor gives up."""

from __future__ import annotations

import pytest

from scalebox_stream.policy.restarts import (
    NEVER_RESTART,
    RestartPolicy,
    decide_restart,
    describe_exit,
    describe_window,
    recent_restarts,
)

POLICY = RestartPolicy()  # 5 restarts in 10 minutes, 1 s doubling up to 30 s


def test_an_agent_that_exits_0_has_finished_and_is_not_restarted() -> None:
    decision = decide_restart(POLICY, 0, stops_by_itself=True, restarts=[], now_s=100.0)
    assert decision.action == "done"


def test_a_projector_that_exits_0_is_restarted_it_never_ends_by_itself() -> None:
    decision = decide_restart(POLICY, 0, stops_by_itself=False, restarts=[], now_s=100.0)
    assert (decision.action, decision.delay_s, decision.number) == ("restart", 1.0, 1)


@pytest.mark.parametrize("code", [-9, -11, 1, 3, 123, 137])
def test_a_crash_or_an_error_is_restarted_after_a_second(code: int) -> None:
    decision = decide_restart(POLICY, code, stops_by_itself=True, restarts=[], now_s=100.0)
    assert (decision.action, decision.delay_s) == ("restart", 1.0)
    assert decision.reason == "restart 1 of 5 in 10 min"


def test_a_usage_or_configuration_error_is_not_restarted() -> None:
    decision = decide_restart(POLICY, 2, stops_by_itself=True, restarts=[], now_s=100.0)
    assert decision.action == "give_up"
    assert "usage or configuration error" in decision.reason


def test_the_backoff_doubles_with_each_restart_in_the_window_and_is_capped() -> None:
    policy = RestartPolicy(limit=10, window_s=3600)
    delays = [decide_restart(policy, -9, True, [float(t) for t in range(n)], now_s=100.0).delay_s
              for n in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_limit_within_the_window_gives_up() -> None:
    four = [10.0, 20.0, 30.0, 40.0]
    fifth = decide_restart(POLICY, -9, True, four, now_s=50.0)
    assert (fifth.action, fifth.number, fifth.delay_s) == ("restart", 5, 16.0)
    sixth = decide_restart(POLICY, -9, True, [*four, 50.0], now_s=60.0)
    assert sixth.action == "give_up"
    assert sixth.reason == "restarted 5 time(s) in 10 min already, the limit"


def test_restarts_older_than_the_window_no_longer_count_and_the_backoff_starts_over() -> None:
    old = [0.0, 1.0, 2.0, 3.0, 4.0]
    decision = decide_restart(POLICY, 1, True, old, now_s=604.5)
    assert (decision.action, decision.number, decision.delay_s) == ("restart", 1, 1.0)
    assert recent_restarts([*old, 603.0], 603.5, 600.0) == [4.0, 603.0]


def test_limit_0_never_restarts_the_old_behaviour() -> None:
    assert decide_restart(NEVER_RESTART, -9, True, [], now_s=0.0).action == "give_up"
    assert decide_restart(NEVER_RESTART, 0, True, [], now_s=0.0).action == "done"


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(limit=-1)
    with pytest.raises(ValueError):
        RestartPolicy(window_s=0)


def test_exits_and_windows_read_as_the_console_says_them() -> None:
    assert describe_exit(1) == "code 1"
    assert describe_exit(-9) == "code -9 (signal SIGKILL)"
    assert describe_exit(-200) == "code -200 (signal 200)"
    assert [describe_window(s) for s in (600, 90, 7200, 45.5)] == ["10 min", "90 s", "2 h", "45.5 s"]
