"""Publishing new tasks from outside the pipeline (CLI, start tasks)."""

from __future__ import annotations

from confluent_kafka import Producer

from scalebox_stream.events import EventCodec, EventStamp, new_task_id
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic


def publish_task(producer: Producer, codec: EventCodec, app: str, module: str, body: str,
                 headers: dict[str, str] | None = None, producer_id: str = "cli") -> str:
    """Send one TaskCreated to the module's topic and to the events topic; returns the task id."""
    task_id = new_task_id()
    topic = task_topic(app, module)
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
