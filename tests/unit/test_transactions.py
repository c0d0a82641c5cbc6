"""The transactional publisher against a fake producer: records and offsets commit together; a producer that
cannot start yet is retried; a hung call or a failing abort gets a fresh producer."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaException, TopicPartition
from fakes.kafka import FakeBroker, kafka_exception

from scalebox_stream.agent.task_runner import OutMessage
from scalebox_stream.kafka.transactions import TransactionalPublisher, TransactionHung


def _publisher(broker: FakeBroker, **kw) -> TransactionalPublisher:
    return TransactionalPublisher("fake:9092", "sbx-agent-t", producer_factory=broker.producer, **kw)


def test_records_and_offsets_commit_in_one_transaction():
    broker = FakeBroker()
    publisher = _publisher(broker)
    assert broker.producers[0].config["transactional.id"] == "sbx-agent-t"
    publisher.publish([OutMessage("sbx.events", "k", b"v")], [TopicPartition("t", 0, 5, "m")], "meta")
    (txn,) = broker.transactions
    assert txn.records == [("sbx.events", "k", b"v", None)]
    assert txn.offsets == {("t", 0): (5, "m")} and txn.group_metadata == "meta"
    assert broker.committed == {("t", 0): (5, "m")}


def test_records_alone_send_no_offsets():
    broker = FakeBroker()
    _publisher(broker).publish([OutMessage("sbx.events", "k", b"v")], [], None)
    (txn,) = broker.transactions
    assert txn.offsets == {} and txn.group_metadata is None


def test_a_producer_whose_coordinator_is_not_ready_is_tried_again():
    broker = FakeBroker()
    broker.init_failures.extend(["init_retriable", "init_retriable"])
    publisher = _publisher(broker, init_retry_s=0.001)
    assert len(broker.producers) == 3 and publisher.producer is broker.producers[-1]
    publisher.publish([OutMessage("x", "k", b"v")], [], None)
    assert len(broker.transactions) == 1


def test_a_producer_that_cannot_start_for_good_raises():
    broker = FakeBroker()
    broker.init_failures.append("init_fatal")
    with pytest.raises(KafkaException):
        _publisher(broker)


def test_a_stop_ends_the_retries():
    broker = FakeBroker()
    broker.init_failures.append("init_retriable")
    stop = threading.Event()
    stop.set()
    with pytest.raises(KafkaException):
        _publisher(broker, stop=stop)


def test_a_failed_commit_raises_and_an_abort_ends_the_transaction():
    broker = FakeBroker()
    publisher = _publisher(broker)
    broker.fail_next_commit("abortable")
    with pytest.raises(KafkaException):
        publisher.publish([OutMessage("x", "k", b"v")], [TopicPartition("t", 0, 1)], "meta")
    publisher.abort()
    assert broker.producers[0].aborts == 1 and not broker.transactions and not broker.committed
    publisher.publish([OutMessage("x", "k", b"v")], [TopicPartition("t", 0, 1)], "meta")
    assert len(broker.transactions) == 1 and len(broker.producers) == 1


def test_a_fatal_error_is_raised_as_fatal_and_replace_fences_the_producer():
    broker = FakeBroker()
    publisher = _publisher(broker)
    broker.fail_next_commit("fatal")
    with pytest.raises(KafkaException) as failure:
        publisher.publish([OutMessage("x", "k", b"v")], [], None)
    assert failure.value.args[0].fatal()
    old = publisher.producer
    publisher.replace()
    assert publisher.producer is not old and len(broker.producers) == 2
    publisher.publish([OutMessage("x", "k", b"v")], [], None)
    assert len(broker.transactions) == 1


def test_the_watchdog_replaces_a_hung_producer():
    broker = FakeBroker()
    publisher = _publisher(broker, timeout_s=0.05, watchdog_grace_s=0.05)
    broker.hang = threading.Event()
    with pytest.raises(TransactionHung):
        publisher.publish([OutMessage("x", "k", b"v")], [], None)
    assert len(broker.producers) == 2 and publisher.producer is broker.producers[1]
    broker.hang.set()  # the stuck call returns: the fenced producer's commit is refused
    broker.hang = None
    publisher.publish([OutMessage("x", "k", b"v2")], [], None)
    assert [t.records[0][2] for t in broker.transactions] == [b"v2"]


def test_an_abort_that_fails_replaces_the_producer():
    broker = FakeBroker()
    publisher = _publisher(broker, timeout_s=0.05, watchdog_grace_s=0.05)
    publisher.producer.begin_transaction()

    def failing_abort(timeout: float) -> None:
        raise kafka_exception("abortable")

    publisher.producer.abort_transaction = failing_abort
    publisher.abort()
    assert len(broker.producers) == 2 and publisher.producer is broker.producers[1]
