"""A transactional producer that publishes records and consumer offsets together, with a watchdog.

librdkafka can block in `send_offsets_to_transaction` past its own timeout after a broker restart
(confluentinc/librdkafka#5511: a stale group-coordinator cache entry). Each blocking transactional call
therefore runs on a helper thread; if it does not return in time, the producer is replaced by a fresh
one with the same transactional id (which fences the stuck one and aborts its open transaction) and the
caller retries. Nothing is lost: the records were not committed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from scalebox_stream.kafka.config import producer_config

log = logging.getLogger(__name__)

WATCHDOG_GRACE_S = 5.0
_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT,
                                 KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


_NEVER_SENDABLE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._INVALID_ARG, KafkaError._UNKNOWN_TOPIC,
                             KafkaError._UNKNOWN_PARTITION, KafkaError.TOPIC_EXCEPTION, KafkaError.INVALID_RECORD,
                             KafkaError.INVALID_MSG, KafkaError.RECORD_LIST_TOO_LARGE})
"""What `produce()` says of a record it will never take, however often it is tried (too large, invalid, for a
topic that does not exist); any other error concerns the producer or the cluster, and passes."""
QUEUE_FULL_WAIT_S = 0.05


class TransactionHung(RuntimeError):
    """A transactional call did not return; the producer was replaced."""


class RecordRefused(KafkaException):
    """`produce()` refused one record for good (see `_NEVER_SENDABLE`): `record` is the one; the transaction is
    still open (abort it)."""

    def __init__(self, error: KafkaError, record: Any) -> None:
        super().__init__(error)
        self.record = record


class TransactionalPublisher:
    """Publishes (topic, key, value, headers[, partition]) records plus offsets in one transaction."""

    def __init__(self, bootstrap: str, transactional_id: str, timeout_s: float = 10.0,
                 stop: threading.Event | None = None, producer_factory: Callable[[dict[str, Any]], Any] = Producer,
                 watchdog_grace_s: float = WATCHDOG_GRACE_S, init_retry_s: float = 0.5,
                 producer_extra: dict[str, Any] | None = None) -> None:
        self.bootstrap, self.transactional_id, self.timeout_s = bootstrap, transactional_id, timeout_s
        self._extra = producer_extra or {}  # librdkafka settings on top of the defaults below
        self._stop = stop or threading.Event()  # ends the retries of a producer that cannot start yet
        self._make = producer_factory  # confluent_kafka.Producer, or a fake in tests
        self._grace_s, self._init_retry_s = watchdog_grace_s, init_retry_s
        self._calls = _CallThread()
        self.producer = self._new_producer()

    def _new_producer(self) -> Any:
        # retry.backoff.ms: back-to-back transactions wait for the previous one to complete on the coordinator, and
        # each retry's backoff adds itself to the transaction (it grows exponentially from the first). A commit
        # flushes at once, so lingering only adds latency.
        delay = self._init_retry_s
        while True:
            producer = self._make(producer_config(self.bootstrap, transactional_id=self.transactional_id, **{
                "retry.backoff.ms": 1, "retry.backoff.max.ms": 100, "linger.ms": 0, **self._extra}))
            try:
                producer.init_transactions(60)
                return producer
            except KafkaException as exc:  # a broker restarting: its coordinator is not there yet
                error = exc.args[0]
                if not (error.retriable() or error.code() in _COORDINATOR_MOVING) or self._stop.is_set():
                    raise
                log.warning("transactional producer not ready (%s); retrying in %.1fs", error.str(), delay)
                self._stop.wait(delay)
                delay = min(2 * delay, 5.0)

    def replace(self) -> None:
        """Start over with a fresh producer (fences the previous one)."""
        self.producer = self._new_producer()

    def publish(self, records: Iterable[Any], offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Produce the records and commit them with the offsets, atomically; raises KafkaException or
        TransactionHung (the transaction is then not committed)."""
        producer = self.producer
        producer.begin_transaction()
        for record in records:
            self._produce(producer, record)

        def commit() -> None:
            if offsets:
                producer.send_offsets_to_transaction(offsets, group_metadata, self.timeout_s)
            producer.commit_transaction(self.timeout_s)

        self._guarded(commit, 2 * self.timeout_s)

    def _produce(self, producer: Any, record: Any) -> None:
        """Produce one record; a full local queue is drained (transient) for up to `timeout_s`; a record
        that can never be sent raises RecordRefused."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers,
                                 partition=getattr(record, "partition", -1))  # -1: the partitioner's choice
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._QUEUE_FULL, "the producer's queue stayed full")) \
                        from None
                producer.poll(QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                if exc.args[0].code() in _NEVER_SENDABLE:
                    raise RecordRefused(exc.args[0], record) from exc
                raise

    def abort(self) -> None:
        """Abort the open transaction; a producer that cannot is replaced."""
        try:
            self._guarded(lambda: self.producer.abort_transaction(self.timeout_s), self.timeout_s)
        except (KafkaException, TransactionHung) as exc:
            log.warning("abort failed (%s); replacing the producer", exc)
            self.replace()

    def _guarded(self, call: Callable[[], None], timeout_s: float) -> None:
        """Run `call` on the call thread; if it is stuck, leave it there and replace the producer."""
        try:
            self._calls.run(call, timeout_s + self._grace_s)
        except TimeoutError:
            log.error("transactional call stuck for %.0fs; replacing the producer", timeout_s + self._grace_s)
            self._calls = _CallThread()
            self.replace()
            raise TransactionHung("transactional call did not return") from None


class _CallThread:
    """A daemon thread that runs the calls handed to it, one at a time (a stuck call strands only it)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], threading.Event, list[BaseException]]] = \
            queue.SimpleQueue()
        threading.Thread(target=self._serve, name="txn-call", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, done, failure = self._calls.get()
            try:
                call()
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            done.set()

    def run(self, call: Callable[[], None], timeout_s: float) -> None:
        """Run `call` here and wait for it; re-raises its exception; TimeoutError if it does not return."""
        done, failure = threading.Event(), []
        self._calls.put((call, done, failure))
        if not done.wait(timeout_s):
            raise TimeoutError
        if failure:
            raise failure[0]
