"""When the agent publishes and how long its poll may wait."""

from __future__ import annotations

from scalebox_stream.policy.pacing import (
    BUSY_S,
    BUSY_WAIT_S,
    FULL_BUFFER_POLL_S,
    IDLE_WAIT_S,
    OFFSETS_INTERVAL_S,
    PUBLISH_INTERVAL_S,
    RUNNING_WAIT_S,
    TXN_GAP_S,
    due_at,
    held_until,
    may_fetch,
    others_running,
    pending_since,
    poll_wait,
    publish_due,
)

T = PUBLISH_INTERVAL_S


def test_a_finished_task_is_published_at_once():
    assert publish_due(True, None, None, 100.0)
    assert publish_due(True, 100.0, 100.0, 100.0)


def test_under_load_a_report_waits_for_the_gap_after_the_last_transaction():
    ended = 100.0
    assert not publish_due(True, None, None, ended + TXN_GAP_S / 2, others_running=True, last_publish=ended)
    assert not publish_due(False, ended, None, ended + TXN_GAP_S / 2, others_running=True, last_publish=ended)
    assert publish_due(True, None, None, ended + TXN_GAP_S * 1.01, others_running=True, last_publish=ended)


def test_a_report_with_no_company_coming_goes_at_once():
    ended = 100.0
    assert publish_due(True, None, None, ended + 0.001, others_running=False, last_publish=ended)
    assert publish_due(True, None, None, ended, others_running=True, last_publish=None)  # no transaction yet


def test_the_gap_never_makes_anything_due():
    assert not publish_due(False, None, None, 100.0 + TXN_GAP_S * 2, others_running=True, last_publish=100.0)


def test_lifecycle_records_wait_for_company_from_when_they_were_queued():
    assert not publish_due(False, 100.0, None, 100.0)
    assert not publish_due(False, 100.0, None, 100.0 + T / 2)
    assert publish_due(False, 100.0, None, 100.0 + T * 1.01)


def test_positions_that_moved_long_ago_do_not_hurry_a_record_just_queued():
    # The consumer stepped over a transaction marker while idle; a task arrives 35 ms later: its
    # TaskAccepted waits for the task's finish instead of going out alone at once.
    assert not publish_due(False, 100.035, 100.0, 100.036)
    assert publish_due(False, 100.035, 100.0, 100.035 + T * 1.01)


def test_positions_alone_are_not_urgent():
    assert not publish_due(False, None, 100.0, 100.0 + T * 2)
    assert not publish_due(False, None, 100.0, 100.0 + OFFSETS_INTERVAL_S / 2)
    assert publish_due(False, None, 100.0, 100.0 + OFFSETS_INTERVAL_S * 1.01)
    assert T < OFFSETS_INTERVAL_S


def test_nothing_pending_means_no_transaction():
    assert due_at(None, None) is None
    assert not publish_due(False, None, None, 100.0)


def test_poll_wait_is_short_only_while_short_tasks_keep_starting():
    assert poll_wait(False, 99.9, 100.0) == IDLE_WAIT_S
    assert poll_wait(True, 100.0 - BUSY_S / 2, 100.0) == BUSY_WAIT_S
    assert poll_wait(True, 100.0 - 2 * BUSY_S, 100.0) == RUNNING_WAIT_S
    assert BUSY_WAIT_S < RUNNING_WAIT_S < IDLE_WAIT_S


def test_an_idle_poll_ends_when_something_pending_falls_due():
    assert abs(poll_wait(False, 0.0, 100.0, due=100.005) - 0.005) < 1e-9
    assert poll_wait(False, 0.0, 100.0, due=99.0) == 0.0
    assert poll_wait(True, 100.0, 100.0, due=200.0) == BUSY_WAIT_S


def test_pending_since_keeps_the_first_sighting_and_clears_when_nothing_is_pending():
    assert pending_since(True, None, 5.0) == 5.0
    assert pending_since(True, 5.0, 7.0) == 5.0
    assert pending_since(False, 5.0, 7.0) is None


def test_a_full_buffer_is_polled_only_now_and_then():
    assert may_fetch(1, 0.0)
    assert may_fetch(64, 0.0)
    assert not may_fetch(0, 0.0)
    assert not may_fetch(-5, FULL_BUFFER_POLL_S / 2)
    assert may_fetch(0, FULL_BUFFER_POLL_S)
    assert BUSY_WAIT_S < FULL_BUFFER_POLL_S < RUNNING_WAIT_S * 10


def test_the_gap_holds_only_what_is_pending_while_others_run():
    assert held_until(True, True, 100.0) == 100.0 + TXN_GAP_S
    assert held_until(False, True, 100.0) is None  # nothing to hold
    assert held_until(True, False, 100.0) is None  # a lone task's report never waits
    assert held_until(True, True, None) is None  # no transaction yet


def test_while_the_gap_holds_the_poll_sleeps_until_it_ends_instead_of_turning_every_millisecond():
    now = 100.005
    held = held_until(True, True, 100.0)
    assert poll_wait(True, now, now, due=now, held=held) == held - now
    assert poll_wait(True, now, now, held=held) > BUSY_WAIT_S
    # once the gap is over, the usual waits apply
    assert poll_wait(True, now, held + 0.001, held=held) == BUSY_WAIT_S
    assert poll_wait(False, 0.0, held + 0.001, held=held) == IDLE_WAIT_S


def test_the_gap_may_hold_a_report_while_a_task_runs_but_never_a_lone_running_task():
    assert others_running(finished=1, running=1)
    assert others_running(finished=0, running=2)
    assert not others_running(finished=0, running=1)  # its report goes the moment it finishes
    assert not others_running(finished=2, running=0)
    assert not others_running(finished=1, running=-1)  # a dead-letter entry never ran in a slot
