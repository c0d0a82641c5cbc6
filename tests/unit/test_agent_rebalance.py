"""Rebalance handling against the fake Kafka edge: assignment from committed positions and lease records, revoke
with a drain, lost partitions, pausing, and the rejoin with a fresh consumer."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from fakes.agent import P0, P1, done, parts, task
from fakes.kafka import FakeBroker, FakeConsumer

from scalebox_stream.agent.rebalance import committed_wait
from scalebox_stream.agent.task_runner import OutMessage


def test_an_assignment_starts_from_the_committed_position_and_reads_the_lease():
    broker = FakeBroker()
    broker.committed[P0] = (10, "sbx2:2;1@3")
    p = parts(broker=broker)
    p.consumer.assign(P0, P1)
    tracker, fresh = p.checkpoint.trackers[P0], p.checkpoint.trackers[P1]
    assert tracker.watermark == 10 and tracker.is_done(12) and not tracker.is_done(11)
    assert tracker.lost_attempt(11) == 3 and tracker.assignment == 1 == p.rebalance.assignments
    assert fresh.watermark == 0 and fresh.metadata() == ""


def test_a_new_owner_sees_the_attempts_its_predecessor_was_running_as_lost():
    """Agent one runs offsets 0..2 (attempts 1, 2, 1), finishes 1 and dies; agent two takes the partition over."""
    broker = FakeBroker()
    one = parts(broker=broker)
    one.consumer.assign(P0)
    running = [one.take(task(0)), one.take(task(1)), one.take(task(2, attempt=2))]
    for t in running:
        one.checkpoint.mark_started(t)
    one.checkpoint.report(done(running[1]))
    one.checkpoint.publish()
    assert broker.committed[P0] == (0, "sbx2:1;0@1,2@2")
    two = parts(broker=broker)
    two.consumer.assign(P0)
    tracker = two.checkpoint.trackers[P0]
    assert (tracker.lost_attempt(0), tracker.lost_attempt(1), tracker.lost_attempt(2)) == (1, None, 2)
    assert tracker.is_done(1) and not tracker.is_done(0)


def test_an_assignment_while_paused_stays_paused():
    p = parts()
    p.consumer.assign(P0)
    p.rebalance.pause_or_resume(hold=True, buffered=0, target=8, cap=32)
    p.consumer.assign(P1)
    assert p.consumer.paused == {P0, P1}


def test_committed_positions_are_asked_for_again_while_the_broker_cannot_answer():
    p = parts()
    p.consumer.committed_failures.extend(["retriable", "retriable"])
    p.consumer.assign(P0)
    assert P0 in p.checkpoint.trackers and not p.consumer.committed_failures


def test_a_committed_position_that_keeps_timing_out_is_logged_with_its_partitions_cause_and_remedy(caplog):
    p = parts()
    p.consumer.committed_failures.extend(["retriable", "retriable", "init_retriable"])
    with caplog.at_level(logging.WARNING, logger="scalebox_stream.agent.rebalance"):
        p.consumer.assign(P0)
    said = [r.getMessage() for r in caplog.records if r.name == "scalebox_stream.agent.rebalance"]
    assert len(said) == 3 and all(line.startswith(f"committed positions of {P0[0]}[0] not available after ")
                                  for line in said), said
    assert "a transaction on the group's offsets was left unfinished" in said[0]
    assert "`scalebox local repair` on the local broker" in said[0] and "kafka-transactions.sh" in said[0]
    assert said[1].endswith("still waiting (an unfinished transaction? `scalebox local repair` on the local broker)")
    assert said[2].endswith("(fake init_retriable failure); asking again"), "not a timeout: no guess at the cause"
    assert P0 in p.checkpoint.trackers


def test_the_committed_wait_names_a_few_partitions_and_counts_the_rest():
    partitions = [TopicPartition("t", i) for i in range(11)]
    line = committed_wait(partitions, 95, "Local: Timed out", True, 2)
    assert line.startswith("committed positions of t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] and 3 more "
                           "not available after 95 s (Local: Timed out); still waiting")


def test_a_stopping_agent_does_not_ask_again():
    p = parts()
    p.stop.set()
    p.consumer.committed_failures.append("retriable")
    with pytest.raises(KafkaException):
        p.consumer.assign(P0)


def test_a_revoke_waits_for_running_tasks_and_commits_them_before_letting_go():
    p = parts()
    p.consumer.assign(P0, P1)
    running = p.take(task(0))
    p.dispatcher.add(task(1))  # buffered, not started: handed back
    other = task(0, P1)
    p.checkpoint.trackers[P1].start(0)
    p.dispatcher.add(other)
    threading.Timer(0.1, p.checkpoint.report, args=(done(running),)).start()
    began = time.monotonic()
    p.consumer.revoke(P0)
    assert 0.05 < time.monotonic() - began < 1.5
    (txn,) = p.broker.transactions
    assert txn.offsets[P0] == (1, "") and [r[2] for r in txn.records] == [b"finished 0"]
    assert P0 not in p.checkpoint.trackers and P1 in p.checkpoint.trackers
    assert [t.source for t in p.dispatcher.waiting] == [P1] and p.dispatcher.in_flight == 0


def test_a_revoke_at_one_slot_commits_the_reports_held_for_a_shared_transaction_and_the_running_task():
    """One slot: offset 0 finished and its report waits (the gap holds it while offset 1 runs); a revoke does not
    wait for the gap: both reports go out, with the position past them, before the partition is let go."""
    p = parts(slots=1)
    p.consumer.assign(P0)
    first = p.take(task(0))
    p.checkpoint.put(OutMessage("sbx.events", "agent", b"lifecycle"))
    p.checkpoint.publish()  # a transaction just ended
    p.checkpoint.report(done(first))
    p.checkpoint.trackers[P0].start(1)
    p.dispatcher.add(task(1))
    second, _ = p.dispatcher.next_task(0)  # the slot goes on to its next buffered task
    assert not p.checkpoint.due(), "the report waits for company while the next task runs"
    threading.Timer(0.1, p.checkpoint.report, args=(done(second),)).start()
    p.consumer.revoke(P0)
    committed = [r[2] for t in p.broker.transactions[1:] for r in t.records]
    assert committed == [b"finished 0", b"finished 1"]
    assert p.broker.committed[P0] == (2, "") and p.dispatcher.in_flight == 0 and P0 not in p.checkpoint.trackers


def test_a_task_still_running_after_the_drain_is_left_to_the_next_owner():
    p = parts(revoke_drain_s=0.05)
    p.consumer.assign(P0)
    running = p.take(task(0))
    p.checkpoint.mark_started(running)
    p.consumer.revoke(P0)
    assert P0 not in p.checkpoint.trackers and not p.broker.transactions
    p.checkpoint.report(done(running))  # late: dropped, and out of flight
    p.checkpoint.publish()
    assert not p.broker.transactions and p.dispatcher.in_flight == 0


def test_a_stopping_agent_does_not_drain_a_revoke():
    p = parts(revoke_drain_s=5.0)
    p.consumer.assign(P0)
    p.take(task(0))
    p.stop.set()
    began = time.monotonic()
    p.consumer.revoke(P0)
    assert time.monotonic() - began < 1.0 and P0 not in p.checkpoint.trackers


def test_lost_partitions_are_forgotten_at_once_and_not_left_paused():
    p = parts()
    p.consumer.assign(P0, P1)
    p.take(task(0))
    p.dispatcher.add(task(1))
    p.consumer.pause([TopicPartition(*P0)])
    p.consumer.lose(P0)
    assert set(p.checkpoint.trackers) == {P1} and not p.dispatcher.waiting
    assert P0 not in p.consumer.paused and not p.broker.transactions


def test_callbacks_of_a_replaced_consumer_are_ignored():
    p = parts()
    stale = FakeConsumer(p.broker)
    partitions = [TopicPartition(*P0)]
    p.rebalance.on_assign(stale, partitions)
    assert p.rebalance.assignments == 0 and not p.checkpoint.trackers
    p.consumer.assign(P0)
    p.rebalance.on_revoke(stale, partitions)
    p.rebalance.on_lost(stale, partitions)
    assert P0 in p.checkpoint.trackers


def test_fetching_pauses_on_a_full_buffer_or_a_hold_and_resumes_back_at_the_target():
    p = parts()
    p.consumer.assign(P0)
    p.rebalance.pause_or_resume(hold=False, buffered=31, target=8, cap=32)
    assert not p.rebalance.paused
    p.rebalance.pause_or_resume(hold=False, buffered=32, target=8, cap=32)
    assert p.rebalance.paused and p.consumer.paused == {P0}
    p.rebalance.pause_or_resume(hold=False, buffered=9, target=8, cap=32)
    assert p.rebalance.paused  # hysteresis
    p.rebalance.pause_or_resume(hold=False, buffered=8, target=8, cap=32)
    assert not p.rebalance.paused and not p.consumer.paused
    p.rebalance.pause_or_resume(hold=True, buffered=0, target=8, cap=32)
    assert p.rebalance.paused
    p.rebalance.pause_or_resume(hold=True, buffered=0, target=8, cap=32)
    assert p.rebalance.paused


def test_a_long_refused_membership_rejoins_with_a_fresh_consumer():
    p = parts(rejoin_after_s=0.05)
    p.consumer.assign(P0)
    p.dispatcher.add(task(0))
    first = p.consumer
    p.rebalance.note_membership(False)
    assert not p.rebalance.membership_lost()
    time.sleep(0.06)
    p.rebalance.note_membership(False)  # the absence continues: it keeps its start
    assert p.rebalance.membership_lost()
    p.rebalance.rejoin()
    assert p.consumer is not first and p.consumer.callbacks and p.rebalance.absent_since is None
    assert not p.checkpoint.trackers and not p.dispatcher.waiting
    deadline = time.monotonic() + 2
    while not first.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.closed
    p.consumer.assign(P0)
    assert p.checkpoint.trackers[P0].assignment == 2 == p.rebalance.assignments


def test_membership_evidence_ends_the_absence():
    p = parts(rejoin_after_s=0.0)
    p.rebalance.note_membership(False)
    assert p.rebalance.membership_lost()
    p.rebalance.note_membership(None)  # says nothing: the count starts again
    assert not p.rebalance.membership_lost()
    p.rebalance.note_membership(False)
    p.consumer.assign(P0)  # an assignment is a membership of its own
    assert not p.rebalance.membership_lost()
