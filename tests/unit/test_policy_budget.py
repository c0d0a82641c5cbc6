"""The error budget: a sliding window of failures that trips and stays tripped until resumed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scalebox_stream.policy.budget import BudgetState, ErrorBudget, admits, step


def test_trips_at_max_failures_within_window() -> None:
    budget = ErrorBudget(max_failures=3, window_s=60)
    assert admits(budget.record("failed", 0))
    assert admits(budget.record("timed_out", 10))
    state = budget.record("error", 20)
    assert state.tripped and not admits(state) and state.tripped_at_s == 20
    assert state.failures == (0, 10, 20)


def test_success_does_not_count_nor_reset() -> None:
    budget = ErrorBudget(max_failures=2, window_s=60)
    budget.record("failed", 0)
    assert budget.record("succeeded", 1).failures == (0,)
    assert budget.record("failed", 2).tripped


def test_window_slides() -> None:
    budget = ErrorBudget(max_failures=3, window_s=60)
    for now in (0, 30, 61, 95):  # at 95 the failures at 0 and 30 are too old
        state = budget.record("failed", now)
    assert not state.tripped and state.failures == (61, 95)
    assert budget.record("succeeded", 154.9).failures == (95,)
    assert budget.record("succeeded", 155).failures == ()  # exactly `window` old: out


def test_stays_tripped_until_resumed() -> None:
    budget = ErrorBudget(max_failures=1, window_s=10)
    assert budget.record("failed", 0).tripped
    state = budget.record("succeeded", 1000)
    assert state.tripped and state.tripped_at_s == 0 and not admits(state)
    resumed = budget.resume()
    assert resumed == BudgetState() and admits(resumed) and budget.state == resumed
    assert budget.record("failed", 1001).tripped


def test_memory_is_bounded() -> None:
    budget = ErrorBudget(max_failures=3, window_s=1e9)
    for now in range(100):
        state = budget.record("failed", now)
    assert state.failures == (97, 98, 99) and state.tripped_at_s == 2


def test_other_outcomes_are_not_failures() -> None:
    state = BudgetState()
    for outcome in ("succeeded", "cancelled", "lost"):
        state = step(state, 1, 60, outcome, 0)
    assert state == BudgetState()


def test_from_spec_and_bad_values() -> None:
    budget = ErrorBudget.from_spec(SimpleNamespace(max_failures=10, window=300.0))
    assert (budget.max_failures, budget.window_s) == (10, 300.0)
    with pytest.raises(ValueError):
        ErrorBudget(0, 10)
    with pytest.raises(ValueError):
        ErrorBudget(1, 0)
