"""The commit unit against the fake Kafka edge: reports, records and positions in one transaction; trackers move
only after a commit; a failed transaction keeps everything for the next, but a record Kafka refuses for good is
never tried again; a revoked partition's report is dropped."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError
from fakes.agent import P0, P1, done, parts, task

from scalebox_stream.agent.checkpoint import Done
from scalebox_stream.agent.task_runner import OutMessage
from scalebox_stream.policy.pacing import IDLE_WAIT_S, PUBLISH_INTERVAL_S


def _records(txn) -> list[bytes]:
    return [value for _, _, value, _ in txn.records]


def test_three_slots_finishing_out_of_order_move_the_watermark_only_past_finished_offsets():
    """Offsets 0, 1, 2 run in three slots and finish as 1, 2, 0 (the second, third, first)."""
    p = parts(slots=3)
    p.consumer.assign(P0)
    running = [p.take(task(offset)) for offset in range(3)]
    for t in running:
        p.checkpoint.mark_started(t)
    assert p.dispatcher.in_flight == 3
    committed = []
    for index in (1, 2, 0):
        p.checkpoint.report(done(running[index]))
        p.checkpoint.publish()
        committed.append(p.broker.transactions[-1].offsets[P0])
    assert committed == [(0, "sbx2:1;0@1,2@1"), (0, "sbx2:1,2;0@1"), (3, "")]
    assert [_records(t) for t in p.broker.transactions] == [[b"finished 1"], [b"finished 2"], [b"finished 0"]]
    assert p.dispatcher.in_flight == 0 and p.checkpoint.trackers[P0].committed == (3, "")
    assert p.timer.results == [True, True, True]
    assert p.broker.transactions[0].group_metadata == p.consumer.consumer_group_metadata()


def test_records_children_and_positions_go_in_one_transaction():
    p = parts()
    p.consumer.assign(P0)
    t = p.take(task(0))
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"started"))
    child = OutMessage("sbx.tasks.app.next", "c1", b"child task")
    p.checkpoint.report(Done(t.source, t.offset, t.assignment, [OutMessage("sbx.events", "t", b"fin"), child]))
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"started", b"fin", b"child task"] and txn.offsets == {P0: (1, "")}


def test_running_marks_ride_with_the_next_transaction():
    p = parts()
    p.consumer.assign(P0)
    t = p.take(task(0, attempt=2))
    p.checkpoint.mark_started(t)
    p.checkpoint.publish()
    assert not p.broker.transactions  # nothing to say on its own
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"heartbeat"))
    p.checkpoint.publish()
    assert p.broker.transactions[-1].offsets == {P0: (0, "sbx2:;0@2")}
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"heartbeat"))
    p.checkpoint.publish()
    assert p.broker.transactions[-1].offsets == {}  # the same position is not committed again


def test_a_revoked_partitions_report_is_dropped():
    p = parts()
    p.consumer.assign(P0, P1)
    gone, kept = p.take(task(0)), p.take(task(0, P1))
    p.consumer.lose(P0)
    p.checkpoint.report(done(gone, b"late"))
    p.checkpoint.report(done(kept, b"kept"))
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"kept"] and set(txn.offsets) == {P1}
    assert p.dispatcher.in_flight == 0 and p.dispatcher.running[P0] == 0


def test_many_dropped_reports_are_one_log_line(caplog):
    p = parts(slots=8)
    p.consumer.assign(P0, P1)
    gone = [p.take(task(offset)) for offset in range(5, 10)] + [p.take(task(3, P1))]
    p.consumer.lose(P0, P1)
    for t in gone:
        p.checkpoint.report(done(t))
    with caplog.at_level(logging.WARNING, logger="scalebox_stream.agent.checkpoint"):
        p.checkpoint.publish()
    said = [r.getMessage() for r in caplog.records if r.name == "scalebox_stream.agent.checkpoint"]
    assert said == [f"dropping the report(s) of 6 task(s) whose partition was revoked (the next owner runs them "
                    f"again): {P0[0]}[0]@5..9 (5), {P1[0]}[1]@3"]
    assert not p.broker.transactions and p.dispatcher.in_flight == 0


def test_a_report_from_an_earlier_assignment_of_the_same_partition_is_dropped():
    p = parts()
    p.consumer.assign(P0)
    old = p.take(task(0))
    p.consumer.lose(P0)
    p.consumer.assign(P0)  # back, under a new assignment: the next owner's view of offset 0 stands
    assert p.checkpoint.trackers[P0].assignment == 2 and not p.checkpoint.holds(P0, old.assignment)
    p.checkpoint.report(done(old))
    p.checkpoint.publish()
    assert not p.broker.transactions and p.dispatcher.in_flight == 0


def test_a_report_that_needed_no_slot_does_not_touch_the_in_flight_count():
    p = parts()
    p.consumer.assign(P0)
    t = task(0)
    p.checkpoint.trackers[P0].start(0)
    p.checkpoint.report(done(t, ran_in_slot=False))
    p.checkpoint.publish()
    assert p.broker.transactions[0].offsets == {P0: (1, "")} and p.dispatcher.in_flight == 0


def test_a_failed_transaction_is_retried_with_everything_exactly_once():
    p = parts()
    p.consumer.assign(P0)
    first, second = p.take(task(0)), p.take(task(1))
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"lifecycle"))
    p.checkpoint.report(done(first))
    p.broker.fail_next_commit("abortable")
    before = p.checkpoint.trackers[P0].copy()
    p.checkpoint.publish()
    assert not p.broker.transactions and not p.broker.committed
    tracker = p.checkpoint.trackers[P0]
    assert (tracker.position(), tracker.committed, tracker.in_flight) == (before.position(), None, 2)
    assert p.dispatcher.in_flight == 2 and p.timer.results == [False]
    assert p.broker.producers[0].aborts == 1
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"lifecycle", b"finished 0"] and txn.offsets == {P0: (1, "")}
    assert p.dispatcher.in_flight == 1 and p.timer.results == [False, True]
    p.checkpoint.report(done(second))
    p.checkpoint.publish()
    assert [_records(t) for t in p.broker.transactions] == [[b"lifecycle", b"finished 0"], [b"finished 1"]]
    assert p.broker.committed == {P0: (2, "")}


def test_a_fatal_error_replaces_the_producer_and_the_next_transaction_goes_through():
    p = parts()
    p.consumer.assign(P0)
    t = p.take(task(0))
    p.checkpoint.report(done(t))
    p.broker.fail_next_commit("fatal")
    p.checkpoint.publish()
    assert len(p.broker.producers) == 2 and p.broker.producers[0].aborts == 0
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"finished 0"] and p.dispatcher.in_flight == 0


def test_commits_refused_as_from_a_non_member_are_evidence_of_absence():
    p = parts()
    p.consumer.assign(P0)
    p.checkpoint.report(done(p.take(task(0))))
    p.broker.fail_next_commit("not_member")
    p.checkpoint.publish()
    assert p.rebalance.absent_since is not None
    p.checkpoint.publish()
    assert p.rebalance.absent_since is None  # a committed position proves membership again


def test_a_partition_end_moves_the_position_on_its_own():
    p = parts()
    p.consumer.assign(P0)
    p.checkpoint.reached_end(P1, 7)  # not held: ignored
    p.checkpoint.reached_end(P0, 0)
    assert not p.checkpoint.offsets_dirty
    p.checkpoint.reached_end(P0, 5)  # offsets 0..4 were never delivered (transaction markers)
    assert p.checkpoint.offsets_dirty
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert txn.records == [] and txn.offsets == {P0: (5, "")} and not p.checkpoint.offsets_dirty


def test_pacing_a_finished_report_is_due_at_once_records_wait_for_company():
    p = parts()
    p.consumer.assign(P0)
    assert not p.checkpoint.due()
    assert p.checkpoint.poll_wait(time.monotonic()) == IDLE_WAIT_S
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"lifecycle"))
    assert not p.checkpoint.due()  # records wait a little for company
    assert 0 <= p.checkpoint.poll_wait(time.monotonic()) <= PUBLISH_INTERVAL_S
    p.checkpoint.records_since = time.monotonic() - PUBLISH_INTERVAL_S
    assert p.checkpoint.due()
    p.checkpoint.publish()
    t = p.take(task(0))
    p.checkpoint.report(done(t))
    assert p.checkpoint.due()  # a lone task's report goes at once


def test_pacing_the_gap_holds_reports_while_others_run():
    p = parts()
    p.consumer.assign(P0)
    a, _, _ = p.take(task(0)), p.take(task(1)), p.take(task(2))
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"x"))
    p.checkpoint.publish()  # the last transaction just ended
    p.checkpoint.report(done(a))
    assert not p.checkpoint.due()
    assert p.checkpoint.poll_wait(time.monotonic()) > 0
    p.checkpoint.last_publish = time.monotonic() - 1.0
    assert p.checkpoint.due()


def test_a_record_kafka_refuses_for_good_fails_its_task_and_the_other_reports_go_out():
    p = parts()
    p.consumer.assign(P0)
    poison, fine = p.take(task(0)), p.take(task(1))
    replaced: list[str] = []

    def minimal(why: str) -> list[OutMessage]:
        replaced.append(why)
        return [OutMessage("sbx.events", poison.event.task_id, b"minimal error report")]

    p.broker.refused[b"huge report"] = KafkaError.MSG_SIZE_TOO_LARGE
    p.checkpoint.report(done(poison, b"huge report", unsendable=minimal))
    p.checkpoint.report(done(fine, b"fine report"))
    p.checkpoint.publish()  # refused: aborted, the poisoned report replaced, nothing waits out a pause
    assert not p.broker.transactions and p.timer.results == [False] and p.broker.producers[0].aborts == 1
    (why,) = replaced
    assert why.startswith("the report could not be published: a record for sbx.events (") and "refusal" in why
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"minimal error report", b"fine report"] and txn.offsets == {P0: (2, "")}
    assert p.dispatcher.in_flight == 0


def test_a_replacement_refused_as_well_leaves_the_offset_bare_and_a_lone_record_is_dropped():
    p = parts()
    p.consumer.assign(P0)
    t = p.take(task(0))
    p.broker.refused[b"bad"] = KafkaError._UNKNOWN_TOPIC
    p.broker.refused[b"also bad"] = KafkaError.MSG_SIZE_TOO_LARGE
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"bad"))
    p.checkpoint.report(done(t, b"also bad", unsendable=lambda why: [OutMessage("sbx.events", "t", b"bad")]))
    for _ in range(4):
        p.checkpoint.publish()
    (txn,) = p.broker.transactions  # three refusals, then the offset goes out: no retry forever
    assert txn.records == [] and txn.offsets == {P0: (1, "")} and p.timer.results == [False] * 3 + [True]


def test_a_full_queue_is_transient_the_record_goes_out_after_a_poll():
    p = parts()
    p.consumer.assign(P0)
    p.broker.queue_full = 3
    p.checkpoint.report(done(p.take(task(0))))
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"finished 0"] and p.timer.results == [True]


def test_other_produce_errors_keep_todays_retry():
    p = parts()
    p.consumer.assign(P0)
    t = p.take(task(0))
    p.broker.refused[b"finished 0"] = KafkaError._STATE  # about the producer, not the record
    p.checkpoint.report(done(t))
    p.checkpoint.publish()
    p.checkpoint.publish()
    assert not p.broker.transactions and p.timer.results == [False, False]
    del p.broker.refused[b"finished 0"]
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert _records(txn) == [b"finished 0"]


def test_a_report_wakes_the_poll_threads_wait_unless_the_gap_holds_it_and_a_freed_slot_always_does():
    """While every slot runs, the poll thread waits for a report (a consumer's poll cannot be woken by one)."""
    p = parts()
    p.consumer.assign(P0)
    a, b, _ = p.take(task(0)), p.take(task(1)), p.take(task(2))
    assert p.checkpoint.report_wakes(time.monotonic())  # nothing published yet: a report goes at once
    began = time.monotonic()
    p.checkpoint.wait(time.monotonic(), 0.05)
    assert time.monotonic() - began >= 0.04  # nothing came in: the whole wait
    p.checkpoint.report(done(a))
    began = time.monotonic()
    p.checkpoint.wait(time.monotonic(), 5.0)
    assert time.monotonic() - began < 1.0  # ended by the report
    p.checkpoint.publish()  # the last transaction just ended; two tasks still run
    p.checkpoint.report(done(b))
    assert not p.checkpoint.report_wakes(time.monotonic())  # the gap holds it: a report ends nothing sooner
    began = time.monotonic()
    p.checkpoint.wait(time.monotonic(), 0.05)
    assert time.monotonic() - began >= 0.04
    p.checkpoint.slot_freed()  # but a slot with nothing to take next does: the consumer may hold a task for it
    began = time.monotonic()
    p.checkpoint.wait(time.monotonic(), 5.0)
    assert time.monotonic() - began < 1.0
    p.checkpoint.last_publish = time.monotonic() - 1.0
    assert p.checkpoint.report_wakes(time.monotonic())
