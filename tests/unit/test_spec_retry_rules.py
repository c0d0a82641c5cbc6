"""Scalebox retry rules: both syntaxes, errors, and the retries_allowed policy helper."""

from __future__ import annotations

import pytest

from scalebox_stream.spec import RetryRule, parse_rules, retries_allowed
from scalebox_stream.spec.errors import FieldError

SCALEBOX = [RetryRule(exit_code=1, count=3), RetryRule(exit_code=2, count=2), RetryRule(exit_code=None, count=1)]


@pytest.mark.parametrize("value", [
    "['1:3','2:2','*']",
    '["1:3", "2:2", "*"]',
    "[1:3, 2:2, *]",
    "1:3,2:2,*",
    ["1:3", "2:2", "*"],
    ["1:3", "2:2", "*:1"],
])
def test_both_syntaxes(value: object) -> None:
    assert parse_rules(value) == SCALEBOX


def test_defaults_and_forms() -> None:
    assert parse_rules(None) == [] and parse_rules("[]") == [] and parse_rules([]) == []
    assert parse_rules([91, "92:3", "*:0"]) == [
        RetryRule(exit_code=91), RetryRule(exit_code=92, count=3), RetryRule(exit_code=None, count=0)]
    assert str(RetryRule(exit_code=None, count=2)) == "*:2"


@pytest.mark.parametrize(("value", "loc", "words"), [
    (["1:3", "1"], (1,), "duplicate retry rule for exit code 1"),
    (["*", "*:2"], (1,), "duplicate retry rule for '*'"),
    (["0"], (0,), "1..255"),
    (["256:1"], (0,), "1..255"),
    (["x"], (0,), "bad retry rule 'x'"),
    (["1:"], (0,), "bad retry rule"),
    (["1:-1"], (0,), "bad retry rule"),
    ([True], (0,), "expected a string"),
    ([["1"]], (0,), "expected a string"),
    ("['1:3','1:1']", (), "duplicate"),
    ("['1:3'", (), "unbalanced"),
    ("['1',,'2']", (), "empty rule"),
    (42, (), "expected a list"),
])
def test_errors(value: object, loc: tuple[int, ...], words: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_rules(value)
    assert any(where == loc and words in msg for where, msg in info.value.issues), info.value.issues


def test_all_bad_items_reported() -> None:
    with pytest.raises(FieldError) as info:
        parse_rules(["x", "2", "2", "300"])
    assert [loc for loc, _ in info.value.issues] == [(0,), (2,), (3,)]


@pytest.mark.parametrize(("code", "retries"), [(0, 0), (1, 3), (2, 2), (3, 1), (124, 1), (255, 1)])
def test_retries_allowed_scalebox_feature_test(code: int, retries: int) -> None:
    """`features/retry_test`: exit 1 runs 4 times, 2 runs 3 times, 3 (wildcard) runs twice."""
    assert retries_allowed(SCALEBOX, code) == retries


def test_retries_allowed_without_wildcard() -> None:
    rules = parse_rules("['91','92:3']")
    assert [retries_allowed(rules, c) for c in (0, 91, 92, 1)] == [0, 1, 3, 0]
    assert retries_allowed([], 1) == 0


def test_exact_rule_beats_wildcard_in_any_order() -> None:
    rules = parse_rules(["*:5", "7:0"])
    assert retries_allowed(rules, 7) == 0 and retries_allowed(rules, 8) == 5
