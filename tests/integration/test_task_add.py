"""`scalebox task add`: the tasks' records on the module's topic and on the events topic are committed together
(read-committed consumers see both), and a module that is not deployed is refused."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import scalebox

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import admin_config, reader_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics, ensure_shared_topics, task_topic


def _committed_task_created(bootstrap: str, topic: str, ids: set[str], timeout_s: float = 60) -> dict[str, dict]:
    """The TaskCreated records of `ids` a read-committed consumer reads on `topic`, by task id."""
    consumer = Consumer(reader_config(bootstrap, "test-task-add", **{"isolation.level": "read_committed"}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    codec, found = EventCodec(), {}
    deadline = time.monotonic() + timeout_s
    try:
        while set(found) != ids and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None and message.key() is not None and message.key().decode() in ids:
                    event = codec.decode(message.value())
                    if event.event_type == "TaskCreated":
                        found[event.task_id] = event.payload
    finally:
        consumer.close()
    return found


def test_added_tasks_are_committed_to_both_topics(kafka_bootstrap, pg_dsn):
    app = f"add-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(admin_config(kafka_bootstrap))
    ensure_shared_topics(admin)
    ensure_app_topics(admin, app, ["m"])
    added = scalebox(["task", "add", "--app", app, "--module", "m", "-h", "k=v", "one", "two"], kafka_bootstrap,
                     pg_dsn)
    assert added.code == 0, added.stderr
    ids = added.stdout.split()
    assert len(ids) == 2
    on_task_topic = _committed_task_created(kafka_bootstrap, task_topic(app, "m"), set(ids))
    on_events = _committed_task_created(kafka_bootstrap, EVENTS_TOPIC, set(ids))
    assert on_task_topic == on_events
    assert [on_task_topic[i]["body"] for i in ids] == ["one", "two"]
    assert on_task_topic[ids[0]]["headers"] == {"k": "v"}


def test_a_module_that_is_not_deployed_is_refused(kafka_bootstrap, pg_dsn):
    app = f"add-{uuid.uuid4().hex[:8]}"
    refused = scalebox(["task", "add", "--app", app, "--module", "m", "one"], kafka_bootstrap, pg_dsn)
    assert refused.code == 2
    assert f"no topic {task_topic(app, 'm')}" in refused.stderr and "deployed" in refused.stderr
