"""The pure attempt-outcome policy (Scalebox retry feature semantics)."""

from types import SimpleNamespace

from scalebox_stream.policy.outcome import AttemptVerdict, classify, decide, decide_attempt, within_deadline
from scalebox_stream.policy.retry import Backoff, RetryPolicy
from scalebox_stream.spec.retry_rules import parse_rules

RULES = parse_rules("['1:3','2:2','*']")


def attempts_until_final(exit_code: int) -> int:
    attempt = 1
    while decide(RULES, attempt, exit_code, False, None).retry:
        attempt += 1
    return attempt


def test_scalebox_retry_feature_counts():
    assert [attempts_until_final(c) for c in (0, 1, 2, 3)] == [1, 4, 3, 2]


def test_rule_named_and_timeouts_follow_rules():
    assert decide(RULES, 1, 1, False, None).rule == "1:3"
    assert decide(RULES, 1, 7, False, None).rule == "*:1"
    verdict = decide(RULES, 1, 124, True, None)
    assert verdict.outcome == "timed_out" and verdict.retry
    assert not decide([], 1, 1, False, None).retry


def test_classify():
    assert classify(0, False, None) == "succeeded"
    assert classify(3, False, None) == "failed"
    assert classify(125, False, "no such image") == "error"


def test_verdict_defaults_for_old_callers() -> None:
    verdict = decide(RULES, 1, 1, False, None)
    assert verdict.delay_s == 0.0 and "retry 1 of 3" in verdict.reason
    assert decide(RULES, 1, 0, False, "bad sink line").outcome == "error"
    assert not decide(RULES, 1, 0, False, "bad sink line").retry


def test_decide_attempt_with_backoff_and_reason() -> None:
    policy = RetryPolicy.from_scalebox(RULES, backoff=Backoff(initial_s=2, factor=2, max_s=60, jitter=0.5),
                                       max_attempts=3)
    first = decide_attempt(policy, 1, 1, 0.3, False, None, 0.5)
    assert first == AttemptVerdict("failed", True, "1:3", 2.0, first.reason)
    assert decide_attempt(policy, 2, 1, 0.3, False, None, 0.0).delay_s == 2.0  # 4 s - 50 %
    last = decide_attempt(policy, 3, 1, 0.3, False, None, 0.5)
    assert not last.retry and "max_attempts 3" in last.reason
    ok = decide_attempt(policy, 1, 0, 0.3, False, None, 0.5)
    assert ok == AttemptVerdict("succeeded", False, "", 0.0, "succeeded")
    timed_out = decide_attempt(policy, 1, 124, 60.0, True, None, 0.5)
    assert timed_out.outcome == "timed_out" and timed_out.retry and timed_out.rule == "*:1"


def test_within_deadline() -> None:
    module = SimpleNamespace(task_max_seconds=None, task_deadline_seconds=100, queue_timeout_seconds=None)
    verdict = AttemptVerdict("failed", True, "1:3", 30.0, "retry")
    assert within_deadline(verdict, module, 0, 60) == verdict
    cancelled = within_deadline(verdict, module, 0, 70)
    assert not cancelled.retry and cancelled.delay_s == 0 and "deadline" in cancelled.reason
    final = AttemptVerdict("failed", False)
    assert within_deadline(final, module, 0, 500) is final


def test_decide_takes_any_rule_shape_not_only_the_spec_model() -> None:
    """policy/ does not import spec/: any object with `exit_code` and `count` is a Scalebox rule."""
    class Rule(SimpleNamespace):
        def __str__(self) -> str:
            return f"{'*' if self.exit_code is None else self.exit_code}:{self.count}"

    rules = [Rule(exit_code=1, count=2), Rule(exit_code=None, count=0)]
    assert [decide(rules, a, 1, False, None).retry for a in (1, 2, 3)] == [True, True, False]
    assert decide(rules, 1, 1, False, None).rule == "1:2"
    assert not decide(rules, 1, 9, False, None).retry
