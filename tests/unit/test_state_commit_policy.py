"""When a state owner commits what it applied: after the interval, or at the command limit; never nothing."""

from __future__ import annotations

import pytest

from scalebox_stream.state.commit import IDLE_WAIT_S, CommitPolicy


def test_due_after_the_interval_or_at_the_command_limit() -> None:
    policy = CommitPolicy(interval_s=0.05, max_commands=100)
    assert not policy.due(0.01, 5)
    assert policy.due(0.05, 1)
    assert policy.due(0.001, 100)
    assert not policy.due(10.0, 0), "nothing applied: nothing to commit"


def test_an_interval_of_zero_commits_every_batch() -> None:
    policy = CommitPolicy(interval_s=0.0)
    assert policy.due(0.0, 1) and policy.wait_s(0.0) == 0.0


def test_the_owner_waits_for_commands_until_what_it_applied_is_due() -> None:
    policy = CommitPolicy(interval_s=0.05)
    assert policy.wait_s(None) == IDLE_WAIT_S, "nothing applied: the idle wait"
    assert policy.wait_s(0.02) == pytest.approx(0.03)
    assert policy.wait_s(0.2) == 0.0, "overdue: no waiting"
    assert CommitPolicy(interval_s=5.0).wait_s(0.0) == IDLE_WAIT_S, "never longer than the idle wait"


def test_the_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEBOX_STATE_COMMIT_MS", "250")
    assert CommitPolicy.from_env() == CommitPolicy(interval_s=0.25)
    monkeypatch.setenv("SCALEBOX_STATE_COMMIT_MS", "")
    assert CommitPolicy.from_env() == CommitPolicy()
