"""The `sbx.apps` compacted topic: which app file an app name stands for, so any agent can load it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from scalebox_stream.kafka.config import reader_config
from scalebox_stream.kafka.topics import APPS_TOPIC


@dataclass(frozen=True)
class AppRecord:
    """Where an app was deployed from."""

    name: str
    source: Path
    env_files: tuple[Path, ...] = ()


def publish_app(producer: Producer, record: AppRecord) -> None:
    """Record (or replace) an app's source under its name."""
    value = json.dumps({"source": str(record.source), "env_files": [str(p) for p in record.env_files]})
    producer.produce(APPS_TOPIC, key=record.name, value=value.encode())


def lookup_app(bootstrap: str, name: str, timeout_s: float = 10.0) -> AppRecord | None:
    """The latest record of `name`, reading the compacted topic from the beginning to its end."""
    consumer = Consumer(reader_config(bootstrap, "lookup", **{"enable.partition.eof": True}))
    try:
        metadata = consumer.list_topics(APPS_TOPIC, timeout=timeout_s).topics.get(APPS_TOPIC)
        if metadata is None or metadata.error is not None:
            return None
        partitions = [TopicPartition(APPS_TOPIC, p, OFFSET_BEGINNING) for p in metadata.partitions]
        consumer.assign(partitions)
        pending, found = {tp.partition for tp in partitions}, None
        while pending:
            message = consumer.poll(timeout_s)
            if message is None:
                break
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                continue
            if message.key() == name.encode() and message.value():
                data = json.loads(message.value())
                found = AppRecord(name, Path(data["source"]), tuple(Path(p) for p in data.get("env_files", [])))
        return found
    finally:
        consumer.close()
