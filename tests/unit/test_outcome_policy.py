"""The pure attempt-outcome policy (Scalebox retry feature semantics)."""

from scalebox_stream.policy.outcome import classify, decide
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
