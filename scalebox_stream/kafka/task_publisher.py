"""Publishing new tasks from outside the pipeline (CLI, start tasks)."""

from __future__ import annotations

import socket

from confluent_kafka import Producer

from scalebox_stream.events import Event, EventCodec, new_task_id
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic


def publish_task(producer: Producer, codec: EventCodec, app: str, module: str, body: str,
                 headers: dict[str, str] | None = None, producer_id: str = "cli") -> str:
    """Send one TaskCreated to the module's topic and to the events topic; returns the task id."""
    task_id = new_task_id()
    topic = task_topic(app, module)
    event = Event("TaskCreated", app, {"body": body, "headers": dict(headers or {}), "parent_task_id": None,
                                       "not_before": None, "topic": topic, "task_created_at": 0},
                  module=module, task_id=task_id, attempt=1, host=socket.gethostname(), producer=producer_id)
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
