"""When the agent publishes and how long its poll may wait."""

from __future__ import annotations

from scalebox_stream.policy.pacing import (
    BUSY_S,
    BUSY_WAIT_S,
    IDLE_WAIT_S,
    PUBLISH_INTERVAL_S,
    RUNNING_WAIT_S,
    poll_wait,
    publish_due,
)


def test_a_finished_task_is_published_at_once():
    assert publish_due(True, False, None, 100.0)
    assert publish_due(True, True, 100.0, 100.0)


def test_lifecycle_events_wait_for_company_from_when_they_were_queued():
    assert not publish_due(False, True, None, 100.0)
    assert not publish_due(False, True, 100.0, 100.0 + PUBLISH_INTERVAL_S / 2)
    assert publish_due(False, True, 100.0, 100.0 + PUBLISH_INTERVAL_S * 1.01)


def test_nothing_pending_means_no_transaction():
    assert not publish_due(False, False, None, 100.0)
    assert not publish_due(False, False, 50.0, 100.0)


def test_poll_wait_is_short_only_while_short_tasks_keep_starting():
    assert poll_wait(False, 99.9, 100.0) == IDLE_WAIT_S
    assert poll_wait(True, 100.0 - BUSY_S / 2, 100.0) == BUSY_WAIT_S
    assert poll_wait(True, 100.0 - 2 * BUSY_S, 100.0) == RUNNING_WAIT_S
    assert BUSY_WAIT_S < RUNNING_WAIT_S < IDLE_WAIT_S
