"""Reading an app's events back from `sbx.events` and writing them to a topic of a test's own: the projection
replay tests rebuild their tables from such a copy (`replayed_digests`)."""

from __future__ import annotations

import time
import uuid

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from support import verify

from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.kafka.config import admin_config, producer_config, secured
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_topics
from scalebox_stream.projector.migrate import drop_projection
from scalebox_stream.projector.service import Projector, ProjectorSettings


def app_events(kafka: str, app: str, since_ms: int, timeout_s: float = 60) -> list[tuple[bytes, bytes, Event]]:
    """(key, value, decoded event) of every event of `app` in `sbx.events` since `since_ms`, per partition in order.

    Reads each partition up to its end as of the call; with read_committed, another test's open transaction
    can hold that end back for a while, so partition EOFs before it are not the end."""
    codec = EventCodec()
    consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"probe-{uuid.uuid4().hex}",
                                 "enable.partition.eof": True, "isolation.level": "read_committed"}))
    try:
        partitions = consumer.list_topics(EVENTS_TOPIC, timeout=10).topics[EVENTS_TOPIC].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(EVENTS_TOPIC, p), timeout=10)[1] for p in partitions}
        starts = consumer.offsets_for_times([TopicPartition(EVENTS_TOPIC, p, since_ms) for p in partitions], 10)
        live = [tp for tp in starts if tp.offset >= 0]
        consumer.assign(live)
        out, done = [], set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(live):
            assert time.monotonic() < deadline, "reading sbx.events timed out"
            m = consumer.poll(1)
            if m is None:
                continue
            if m.error():
                if m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
                continue
            try:
                event = codec.decode(m.value())
            except DecodeError:
                continue
            if event.app == app:
                out.append((m.key(), m.value(), event))
    finally:
        consumer.close()
    return out


def copy_to_topic(kafka: str, records: list[tuple[bytes, bytes, Event]], topic: str) -> None:
    """Write the records to a new topic (3 partitions, same keys: per-task order is kept)."""
    ensure_topics(AdminClient(admin_config(kafka)), {topic: 3})
    producer = Producer(producer_config(kafka))
    for key, value, _ in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def replayed_digests(kafka: str, dsn: str, topic: str, group: str) -> dict:
    """What `scalebox replay --yes` does, on a test's own topic: drop the projection in `dsn`, project `topic`
    from its start (batches of 1,000, consumer group `group`); the tables' digests then."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        drop_projection(conn)
    Projector(kafka, dsn, ProjectorSettings(batch_size=1000), group=group, topic=topic).run(
        until_caught_up=True, install_signals=False)
    with psycopg.connect(dsn) as conn:
        return verify.table_digests(conn)
