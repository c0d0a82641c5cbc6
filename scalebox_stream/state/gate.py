"""Admission gated by a semaphore (Scalebox's wait-queue pattern): a task starts only while the semaphore is
positive, and takes one from it.

`SemaphoreGate.acquire` asks the semaphore's owner to decrement it, which the owner refuses below zero (the
check and the decrement are one step, linearizable). Refused, it waits for the next change of that semaphore on
the changelog (a blocking fetch of one partition, read_committed), then asks again: no polling of the owner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from scalebox_stream.kafka.config import consumer_config
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import BELOW_ZERO, OK, SEMAPHORE, Item, decode_key, partition_of


class SemaphoreGate:
    """Takes one from a semaphore of an app before each task (blocking until it is positive)."""

    def __init__(self, bootstrap: str, client: Callable[[], StateClient], app: str, name: str) -> None:
        self.bootstrap, self._client, self.app, self.name = bootstrap, client, app, name
        self._watch: Consumer | None = None
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> str | None:
        """None once one was taken; else why not (the agent is stopping, the semaphore is missing, an error)."""
        try:
            return self._acquire(stop)
        except (TimeoutError, RuntimeError, KafkaException) as exc:  # the task waits and is checked again
            return f"{type(exc).__name__}: {exc}"

    def _acquire(self, stop: threading.Event) -> str | None:
        with self._lock:  # one waiter per agent at a time: the others queue behind it, in order
            client = self._client()
            changelog = TopicPartition(client.topics.changelog, partition_of(self.app, self.name, client.partitions))
            while not stop.is_set():
                end = self._consumer().get_watermark_offsets(changelog, timeout=10, cached=False)[1]
                reply = client.call(client.command("add", SEMAPHORE, self.app, self.name, n=-1))
                if reply.code == OK:
                    return None
                if reply.reason != BELOW_ZERO:
                    return reply.error or f"semaphore {self.name!r}: code {reply.code}"
                self._wait_positive(TopicPartition(changelog.topic, changelog.partition, end), stop)
            return "the agent is stopping"

    def _consumer(self) -> Consumer:
        if self._watch is None:
            self._watch = Consumer(consumer_config(self.bootstrap, "sbx.state.gate", **{
                "enable.partition.eof": False, "fetch.wait.max.ms": 500}))
        return self._watch

    def _wait_positive(self, start: TopicPartition, stop: threading.Event) -> None:
        """Until the changelog shows the semaphore positive after `start` (or the agent stops)."""
        consumer = self._consumer()
        consumer.assign([start])
        key = (SEMAPHORE, self.app, self.name)
        while not stop.is_set():
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None and m.value() is not None and decode_key(m.key()) == key \
                        and int(Item.from_json(m.value()).value) > 0:
                    return

    def close(self) -> None:
        with self._lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
