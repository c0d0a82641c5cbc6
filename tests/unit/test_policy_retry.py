"""The retry policy: rule matching, retries per rule, max_attempts, backoff and jitter."""

from __future__ import annotations

import pytest

from scalebox_stream.policy.expr import compile_expr
from scalebox_stream.policy.retry import Backoff, RetryPolicy, Rule, decide_retry
from scalebox_stream.spec import parse_rules

SCALEBOX = RetryPolicy.from_scalebox(parse_rules("['1:3','2:2','*']"))
STRUCTURED = RetryPolicy(
    rules=(
        Rule(3, frozenset({1, 14}), label="a"),
        Rule(2, when=compile_expr("exit_code == 2 and duration < 5"), label="b"),
        Rule(0, frozenset({110}), label="never"),
        Rule(1, label="any"),
    ),
    max_attempts=5,
    backoff=Backoff(initial_s=1, factor=2, max_s=10, jitter=0),
)


def runs(policy: RetryPolicy, exit_code: int, duration_s: float = 1.0, timed_out: bool = False) -> int:
    """How many times a task that always ends like this is run."""
    attempt = 1
    while decide_retry(policy, attempt, exit_code, duration_s, timed_out, 0.5).retry:
        attempt += 1
        assert attempt < 100
    return attempt


def test_scalebox_counts_and_no_delay() -> None:
    assert [runs(SCALEBOX, code) for code in (0, 1, 2, 3, 124)] == [1, 4, 3, 2, 2]
    decision = decide_retry(SCALEBOX, 1, 1, 0.0, False, 0.0)
    assert decision.retry and decision.delay_s == 0.0 and decision.rule == "1:3"
    assert "retry 1 of 3" in decision.reason


def test_scalebox_order_does_not_matter() -> None:
    policy = RetryPolicy.from_scalebox(parse_rules(["*:0", "5:2"]))
    assert runs(policy, 5) == 3 and runs(policy, 6) == 1


def test_first_match_decides() -> None:
    assert runs(STRUCTURED, 1) == 4 and runs(STRUCTURED, 14) == 4
    assert runs(STRUCTURED, 2, duration_s=1) == 3
    assert runs(STRUCTURED, 2, duration_s=9) == 2  # `when` fails: falls through to the wildcard
    assert runs(STRUCTURED, 110) == 1
    assert runs(STRUCTURED, 7) == 2
    assert decide_retry(STRUCTURED, 1, 110, 1.0, False, 0.0).rule == "never"


def test_exit_zero_and_no_rule() -> None:
    decision = decide_retry(STRUCTURED, 1, 0, 1.0, True, 0.0)
    assert not decision.retry and "exit code 0" in decision.reason
    decision = decide_retry(RetryPolicy(), 1, 3, 1.0, False, 0.0)
    assert not decision.retry and decision.rule == "" and "no retry rule matches exit code 3" in decision.reason


def test_exhausted_names_rule() -> None:
    decision = decide_retry(SCALEBOX, 3, 2, 0.0, False, 0.0)
    assert not decision.retry and decision.rule == "2:2" and "allows 2 retries" in decision.reason


def test_max_attempts_caps_every_rule() -> None:
    policy = RetryPolicy(rules=(Rule(10, label="ten"),), max_attempts=3)
    assert runs(policy, 1) == 3
    decision = decide_retry(policy, 3, 1, 0.0, False, 0.0)
    assert not decision.retry and "max_attempts 3" in decision.reason
    assert runs(RetryPolicy(rules=(Rule(10),), max_attempts=1), 1) == 1


def test_when_sees_attempt_and_timed_out() -> None:
    policy = RetryPolicy(rules=(Rule(5, when=compile_expr("timed_out and attempt < 3")),))
    assert runs(policy, 124, timed_out=True) == 3
    assert runs(policy, 124, timed_out=False) == 1


def test_both_conditions_must_hold() -> None:
    policy = RetryPolicy(rules=(Rule(1, frozenset({3}), compile_expr("duration > 10")),))
    assert runs(policy, 3, duration_s=11) == 2
    assert runs(policy, 3, duration_s=1) == 1 and runs(policy, 4, duration_s=11) == 1


def test_backoff_sequence() -> None:
    delays = [decide_retry(STRUCTURED, k, 1, 1.0, False, 0.5).delay_s for k in (1, 2, 3)]
    assert delays == [1.0, 2.0, 4.0]
    backoff = Backoff(initial_s=1, factor=2, max_s=10)
    assert [backoff.delay(k, 0.5) for k in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert Backoff(initial_s=3, factor=1, max_s=3).delay(50, 0.5) == 3
    assert backoff.delay(100_000, 0.5) == 10  # no overflow for absurd attempt numbers
    assert Backoff(initial_s=0, factor=2, max_s=0).delay(4, 0.9) == 0


@pytest.mark.parametrize("rng", [0.0, 0.1, 0.25, 0.5, 0.75, 0.999999])
def test_jitter_bounds(rng: float) -> None:
    backoff = Backoff(initial_s=4, factor=2, max_s=100, jitter=0.25)
    for attempt in (1, 2, 3):
        base = 4 * 2 ** (attempt - 1)
        assert base * 0.75 <= backoff.delay(attempt, rng) < base * 1.25 + 1e-9


def test_jitter_is_deterministic_and_linear() -> None:
    backoff = Backoff(initial_s=10, factor=2, max_s=100, jitter=0.1)
    assert backoff.delay(1, 0.0) == pytest.approx(9.0)
    assert backoff.delay(1, 0.5) == pytest.approx(10.0)
    assert backoff.delay(1, 0.75) == pytest.approx(10.5)
    assert Backoff(initial_s=10, max_s=10, jitter=1).delay(1, 0.0) == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="rng_value"):
        decide_retry(SCALEBOX, 1, 1, 0.0, False, 1.0)
    with pytest.raises(ValueError, match="rng_value"):
        Backoff().delay(1, -0.1)
    for kwargs in ({"initial_s": -1}, {"factor": 0.5}, {"initial_s": 5, "max_s": 1}, {"jitter": 1.5}):
        with pytest.raises(ValueError, match="bad backoff"):
            Backoff(**kwargs)
