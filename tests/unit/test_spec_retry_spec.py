"""The structured `retry:` key, `error_budget:`, the new timeout keys and durations: parsing and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalebox_stream.policy.retry import Backoff, RetryPolicy
from scalebox_stream.spec import AppSpec, ModuleSpec, SpecError, parse_app, parse_duration

FULL = """\
name: a
modules:
  m:
    image: x
    task_max_seconds: 600
    task_deadline_seconds: 3600
    queue_timeout_seconds: 60
    error_budget: {max_failures: 10, window: 5m}
    retry:
      max_attempts: 5
      backoff: {initial: 500ms, factor: 3, max: 1m, jitter: 0.1}
      rules:
        - exit_codes: [1, 14]
          retries: 3
        - when: "exit_code == 2 and duration < 5"
          retries: 2
        - exit_codes: '*'
          retries: 1
        - exit_codes: 110
          retries: 0
"""


def parse(text: str, tmp_path: Path) -> AppSpec:
    return parse_app(text, file="app.yaml", app_dir=tmp_path, source=tmp_path / "app.yaml")


def module(tmp_path: Path, settings: str) -> ModuleSpec:
    """Module `m` (image x) with extra settings, indented by 4 spaces."""
    return parse("name: a\nmodules:\n  m:\n    image: x\n" + settings, tmp_path).modules["m"]


def error_of(text: str, tmp_path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text, tmp_path)
    return info.value


def assert_issue(err: SpecError, line: int, field: str, *words: str) -> None:
    for issue in err.issues:
        if issue.line == line and issue.field == field and all(w in issue.message for w in words):
            return
    raise AssertionError(f"no issue at line {line} for {field} with {words}:\n{err}")


def test_full_structured_form(tmp_path: Path) -> None:
    m = parse(FULL, tmp_path).modules["m"]
    assert (m.task_max_seconds, m.task_deadline_seconds, m.queue_timeout_seconds) == (600, 3600, 60)
    assert m.error_budget is not None and (m.error_budget.max_failures, m.error_budget.window) == (10, 300)
    assert m.retry is not None and m.retry.max_attempts == 5
    policy = m.retry_policy
    assert policy.max_attempts == 5
    assert policy.backoff == Backoff(initial_s=0.5, factor=3, max_s=60, jitter=0.1)
    assert [r.retries for r in policy.rules] == [3, 2, 1, 0]
    assert policy.rules[0].exit_codes == frozenset({1, 14}) and policy.rules[0].label == "rules.0 (exit_codes 1, 14)"
    assert str(policy.rules[1].when) == "exit_code == 2 and duration < 5"
    assert policy.rules[2].exit_codes is None and policy.rules[2].label == "rules.2 (exit_codes *)"
    assert policy.rules[3].exit_codes == frozenset({110})


def test_defaults(tmp_path: Path) -> None:
    m = module(tmp_path, "")
    assert m.retry is None and m.error_budget is None
    assert m.task_deadline_seconds is None and m.queue_timeout_seconds is None
    assert m.retry_policy == RetryPolicy()
    structured = module(tmp_path, "    retry: {rules: [{exit_codes: 1}]}\n").retry_policy
    assert structured.backoff == Backoff(1.0, 2.0, 60.0, 0.0) and structured.rules[0].retries == 1
    big = module(tmp_path, "    retry: {backoff: {initial: 2m}, rules: [{when: timed_out}]}\n").retry_policy
    assert big.backoff == Backoff(120.0, 2.0, 120.0, 0.0)
    none = module(tmp_path, "    retry: {backoff: null, rules: [{exit_codes: '*'}]}\n").retry_policy
    assert none.backoff is None


def test_scalebox_form_with_retry_cap_and_backoff(tmp_path: Path) -> None:
    plain = module(tmp_path, "    retry_rules: ['1:3', '*']\n").retry_policy
    assert plain.backoff is None and plain.max_attempts is None
    assert [r.label for r in plain.rules] == ["1:3", "*:1"]
    both = module(tmp_path, "    retry_rules: \"['*', '2:2']\"\n    retry: {max_attempts: 2, backoff: {initial: 3}}\n")
    policy = both.retry_policy
    assert [r.label for r in policy.rules] == ["2:2", "*:1"]  # the exact code wins over '*'
    assert policy.max_attempts == 2 and policy.backoff == Backoff(3.0, 2.0, 60.0, 0.0)
    capped = module(tmp_path, "    retry_rules: ['1:3']\n    retry: {max_attempts: 2}\n").retry_policy
    assert capped.backoff is None and capped.max_attempts == 2


def test_both_rule_forms_is_an_error(tmp_path: Path) -> None:
    err = error_of("name: a\nmodules:\n  m:\n    image: x\n    retry_rules: ['1:3']\n    retry:\n"
                   "      rules:\n        - exit_codes: 1\n", tmp_path)
    assert_issue(err, 7, "modules.m.retry.rules", "either retry_rules", "not both")
    err = error_of("name: a\nmodules:\n  m:\n    image: x\n    parameters:\n      retry_rules: []\n"
                   "    retry: {rules: []}\n", tmp_path)
    assert_issue(err, 7, "modules.m.retry.rules", "not both")


def test_errors_name_field_and_line(tmp_path: Path) -> None:
    err = error_of("""\
name: a
modules:
  m:
    image: x
    retry:
      backof: 1
      max_attempts: true
      rules:
        - exit_codes: [0, 300, x, 1, 1]
          max: 3
        - when: "__import__('os')"
        - when: "exit_code.real == 1"
        - retries: 2
        - '1:3'
        - when: 3
        - {exit_codes: 1, retries: -1}
        - {exit_codes: [], when: "exit_code =="}
        - {exit_codes: [1, '*']}
  n:
    image: x
    retry: [1]
  o:
    image: x
    retry: {max_attempts: 0, rules: {exit_codes: 1}}
""", tmp_path)
    assert_issue(err, 6, "modules.m.retry.backof", "did you mean 'backoff'?")
    assert_issue(err, 7, "modules.m.retry.max_attempts", "boolean")
    assert_issue(err, 9, "modules.m.retry.rules.0.exit_codes.0", "exit code 0", "never retried")
    assert_issue(err, 9, "modules.m.retry.rules.0.exit_codes.1", "1..255", "300")
    assert_issue(err, 9, "modules.m.retry.rules.0.exit_codes.2", "'x'")
    assert_issue(err, 9, "modules.m.retry.rules.0.exit_codes.4", "listed twice")
    assert_issue(err, 10, "modules.m.retry.rules.0.max", "use 'retries'")
    assert_issue(err, 11, "modules.m.retry.rules.1.when", "function calls not allowed")
    assert_issue(err, 12, "modules.m.retry.rules.2.when", "attribute access not allowed")
    assert_issue(err, 13, "modules.m.retry.rules.3", "needs exit_codes or when")
    assert_issue(err, 14, "modules.m.retry.rules.4", "retry_rules")
    assert_issue(err, 15, "modules.m.retry.rules.5.when", "expression string")
    assert_issue(err, 16, "modules.m.retry.rules.6.retries", "greater than or equal to 0")
    assert_issue(err, 17, "modules.m.retry.rules.7.exit_codes", "at least one")
    assert_issue(err, 17, "modules.m.retry.rules.7.when", "bad expression")
    assert_issue(err, 18, "modules.m.retry.rules.8.exit_codes.1", "stands alone")
    assert_issue(err, 21, "modules.n.retry", "expected a mapping")
    assert_issue(err, 24, "modules.o.retry.max_attempts", "greater than or equal to 1")
    assert_issue(err, 24, "modules.o.retry.rules", "list of rules")


def test_backoff_and_budget_errors(tmp_path: Path) -> None:
    err = error_of("""\
name: a
modules:
  m:
    image: x
    task_deadline_seconds: -1
    queue_timeout_seconds: true
    error_budget: {max_failures: 0, window: 0}
    retry:
      backoff:
        initial: 2m
        max: 1s
  n:
    image: x
    error_budget: {max_errors: 3, window: soon}
    retry:
      backoff: {factor: 0.5, jitter: 2, initial: '-1s', cap: 3}
  o:
    image: x
    error_budget: 10
""", tmp_path)
    assert_issue(err, 5, "modules.m.task_deadline_seconds", "greater than 0")
    assert_issue(err, 6, "modules.m.queue_timeout_seconds", "boolean")
    assert_issue(err, 7, "modules.m.error_budget.max_failures", "greater than or equal to 1")
    assert_issue(err, 7, "modules.m.error_budget.window", "greater than 0")
    assert_issue(err, 11, "modules.m.retry.backoff.max", "must not be less than initial")
    assert_issue(err, 14, "modules.n.error_budget.max_errors", "use 'max_failures'")
    assert_issue(err, 14, "modules.n.error_budget.window", "expected a duration", "'soon'")
    assert_issue(err, 16, "modules.n.retry.backoff.factor", "greater than or equal to 1")
    assert_issue(err, 16, "modules.n.retry.backoff.jitter", "less than or equal to 1")
    assert_issue(err, 16, "modules.n.retry.backoff.initial", "expected a duration")
    assert_issue(err, 16, "modules.n.retry.backoff.cap", "use 'max'")
    assert_issue(err, 19, "modules.o.error_budget", "expected a mapping")


def test_unknown_module_key_suggests_new_keys(tmp_path: Path) -> None:
    err = error_of("name: a\nmodules:\n  m:\n    image: x\n    retyr: {}\n    error_budgte: {}\n", tmp_path)
    assert_issue(err, 5, "modules.m.retyr", "did you mean 'retry'?")
    assert_issue(err, 6, "modules.m.error_budgte", "did you mean 'error_budget'?")


@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (5, 5.0), (2.5, 2.5), ("7", 7.0), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0),
    (" 3 s ", 3.0), (".5s", 0.5),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [True, None, "", "5d", "-1s", -1, "1m30s", float("inf"), "ms", [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)
