"""Publishing new tasks from outside the pipeline (CLI, start tasks): `TaskSender` does it transactionally."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from confluent_kafka import KafkaException, Producer

from scalebox_stream.events import Event, EventCodec, EventStamp, new_task_id
from scalebox_stream.kafka.config import producer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic


def publish_task(producer: Producer, codec: EventCodec, app: str, module: str, body: str,
                 headers: dict[str, str] | None = None, producer_id: str = "cli", host: str | None = None) -> str:
    """Send one TaskCreated to the module's topic (its `host`'s, for a task bound to one) and to the events
    topic; returns the task id."""
    task_id = new_task_id()
    topic = task_topic(app, module, host)
    event = EventStamp.for_cli(app, producer_id).task_created(task_id, module, body, dict(headers or {}), topic)
    value = codec.encode(event)
    producer.produce(topic, key=task_id, value=value)
    producer.produce(EVENTS_TOPIC, key=task_id, value=value)
    producer.poll(0)
    return task_id


def flush_or_fail(producer: Producer, timeout_s: float = 30.0) -> None:
    """Wait until every record is acknowledged; raise if some could not be delivered."""
    remaining = producer.flush(timeout_s)
    if remaining:
        raise RuntimeError(f"{remaining} record(s) not acknowledged by Kafka within {timeout_s:.0f}s")


class TaskSender:
    """TaskCreated (and the CLI's other events) from outside the pipeline, each batch in one Kafka transaction.

    A task's record on its module's topic and its record on the events topic commit together or not at all,
    so no agent runs a task the event log never heard of, and no TaskCreated names a task that never ran.
    """

    def __init__(self, bootstrap: str, producer_id: str = "cli", timeout_s: float = 30.0,
                 make_producer: Callable[[dict[str, Any]], Producer] = Producer) -> None:
        self.producer_id, self.timeout_s = producer_id, timeout_s
        self.codec = EventCodec()
        self.producer = make_producer(producer_config(bootstrap,
                                                      transactional_id=f"sbx.{producer_id}.{uuid.uuid4().hex}"))
        self._kafka("start a producer", lambda: self.producer.init_transactions(timeout_s))

    def send(self, app: str, tasks: Sequence[tuple[str, str]], headers: dict[str, str] | None = None,
             host: str | None = None) -> list[str]:
        """Publish (module, body) tasks in one transaction (to `host`'s topics if given); their ids, in order."""
        with self._transaction():
            return [publish_task(self.producer, self.codec, app, module, body, headers, self.producer_id, host)
                    for module, body in tasks]

    def send_event(self, event: Event) -> None:
        """Publish one event to the events topic in a transaction of its own."""
        with self._transaction():
            self.producer.produce(EVENTS_TOPIC, key=event.task_id or event.app, value=self.codec.encode(event))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._kafka("begin a transaction", self.producer.begin_transaction)
        try:
            yield
        except BaseException:
            with suppress(KafkaException):
                self.producer.abort_transaction(self.timeout_s)
            raise
        self._kafka("commit the transaction", lambda: self.producer.commit_transaction(self.timeout_s))

    @staticmethod
    def _kafka(what: str, step: Callable[[], object]) -> None:
        """Run one transaction step; a Kafka error becomes a RuntimeError that says which step failed."""
        try:
            step()
        except KafkaException as exc:
            raise RuntimeError(f"Kafka did not {what}: {exc}") from exc
