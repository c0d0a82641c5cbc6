"""`ensure_topics` returns only once every partition of the topics is served: a client may ask for offsets at once."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import admin_config, secured
from scalebox_stream.kafka.topics import ensure_topics


def test_new_topics_answer_for_their_offsets_at_once(kafka_bootstrap):
    # Without the wait for served partitions, about two of three new topics here gave NOT_LEADER_FOR_PARTITION.
    admin = AdminClient(admin_config(kafka_bootstrap))
    consumer = Consumer(secured({"bootstrap.servers": kafka_bootstrap, "group.id": f"sbx.test.{uuid.uuid4().hex[:8]}",
                                 "log_level": 0}))
    names = [f"sbx.test.ready.{uuid.uuid4().hex[:8]}" for _ in range(12)]
    try:
        for name in names:
            ensure_topics(admin, {name: 6})
            ends = [consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in range(6)]
            assert ends == [0] * 6
    finally:
        consumer.close()
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
