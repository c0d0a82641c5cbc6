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
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from scalebox_stream.kafka.config import producer_config

log = logging.getLogger(__name__)

WATCHDOG_GRACE_S = 5.0
_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT,
                                 KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


class TransactionHung(RuntimeError):
    """A transactional call did not return; the producer was replaced."""


class TransactionalPublisher:
    """Publishes (topic, key, value, headers[, partition]) records plus offsets in one transaction."""

    def __init__(self, bootstrap: str, transactional_id: str, timeout_s: float = 10.0,
                 stop: threading.Event | None = None) -> None:
        self.bootstrap, self.transactional_id, self.timeout_s = bootstrap, transactional_id, timeout_s
        self._stop = stop or threading.Event()  # ends the retries of a producer that cannot start yet
        self._calls = _CallThread()
        self.producer = self._new_producer()

    def _new_producer(self) -> Producer:
        # retry.backoff.ms: back-to-back transactions wait for the previous one to complete on the coordinator;
        # the default 100 ms retry backoff made every send_offsets_to_transaction take ~100 ms, and 5 ms still
        # doubled a transaction (9.6 ms against 4.8 ms at 1 ms; the backoff grows exponentially from there).
        # A commit flushes at once, so lingering only adds latency.
        delay = 0.5
        while True:
            producer = Producer(producer_config(self.bootstrap, transactional_id=self.transactional_id, **{
                "retry.backoff.ms": 1, "retry.backoff.max.ms": 100, "linger.ms": 0}))
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
            producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers,
                             partition=getattr(record, "partition", -1))  # -1: the partitioner's choice

        def commit() -> None:
            if offsets:
                producer.send_offsets_to_transaction(offsets, group_metadata, self.timeout_s)
            producer.commit_transaction(self.timeout_s)

        self._guarded(commit, 2 * self.timeout_s)

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
            self._calls.run(call, timeout_s + WATCHDOG_GRACE_S)
        except TimeoutError:
            log.error("transactional call stuck for %.0fs; replacing the producer", timeout_s + WATCHDOG_GRACE_S)
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
