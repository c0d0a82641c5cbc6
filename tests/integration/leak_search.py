"""Searches everything the engine wrote for a marker, byte for byte: every Kafka record written since a time
(committed or not, on any topic), every projection row, and log files."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import secured


def in_topics(kafka: str, marker: bytes, since_ms: int) -> list[str]:
    """Topics holding `marker` in a key, value or header of a record written since `since_ms` (aborted ones
    too: the consumer reads uncommitted)."""
    admin = AdminClient(secured({"bootstrap.servers": kafka}))
    metadata = admin.list_topics(timeout=30)
    consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"leak-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False, "isolation.level": "read_uncommitted",
                                 "enable.partition.eof": True}))
    try:
        wanted = [TopicPartition(name, p, since_ms) for name, topic in metadata.topics.items()
                  if not name.startswith("__") for p in topic.partitions]
        starts = consumer.offsets_for_times(wanted, timeout=30)
        ends: dict[tuple[str, int], int] = {}
        assigned = []
        for tp in starts:
            high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)[1]
            if 0 <= tp.offset < high:
                ends[(tp.topic, tp.partition)] = high
                assigned.append(tp)
        found: set[str] = set()
        consumer.assign(assigned)
        deadline = time.monotonic() + 120
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                key = (message.topic(), message.partition())
                if message.error():  # the end of a partition (past its last transaction marker too)
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(key, None)
                    continue
                parts = [message.key() or b"", message.value() or b""]
                parts += [value or b"" for _, value in message.headers() or []]
                if any(marker in part for part in parts):
                    found.add(message.topic())
        assert not ends, f"topics not read to their end: {sorted(ends)}"
        return sorted(found)
    finally:
        consumer.close()


def in_tables(pg: str, marker: bytes) -> list[str]:
    """Projection tables with a row whose text (bytea columns shown in hex) holds `marker`."""
    found = []
    with psycopg.connect(pg, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE'")]
        for table in tables:
            hit = conn.execute(f'SELECT 1 FROM "{table}" AS r WHERE r::text LIKE %s OR r::text LIKE %s LIMIT 1',
                               (f"%{marker.decode()}%", f"%{marker.hex()}%")).fetchone()
            if hit:
                found.append(table)
    return found


def assert_no_leak(kafka: str, pg: str, marker: bytes, since_ms: int) -> None:
    assert in_topics(kafka, marker, since_ms) == []
    assert in_tables(pg, marker) == []


def in_files(paths: Iterable[Path], marker: bytes) -> list[str]:
    """The files (logs) among `paths` (directories are searched whole) whose bytes hold `marker`."""
    found = []
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file() and marker in file.read_bytes():
                found.append(str(file))
    return found
