"""Whether a topic's log still starts at its first record: a partition whose earliest offset is above 0 has lost
its oldest records (to a retention, or to records deleted by an operator), and a projection rebuilt from it
would silently miss them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, TopicPartition

from scalebox_stream.kafka.config import reader_config


@dataclass(frozen=True)
class Gap:
    """The records a partition no longer holds: offsets 0 to `first_kept` - 1."""

    partition: int
    first_kept: int
    """The partition's earliest offset (its low watermark)."""
    end: int
    """Its end offset (the next record's offset)."""
    first_kept_ms: int | None
    """The timestamp of the earliest record still there (None if none could be read)."""

    @property
    def missing(self) -> int:
        """How many offsets are gone (transaction markers included: an upper bound on the records)."""
        return self.first_kept


def find_gaps(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Gap]:
    """The partitions of `topic` that no longer start at offset 0, in partition order (none if the topic is
    missing or whole)."""
    consumer = Consumer(reader_config(bootstrap, "log-start", **{"isolation.level": "read_uncommitted",
                                                                 "enable.partition.eof": False}))
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        gaps = []
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            if low > 0:
                gaps.append(Gap(partition, low, high, _first_timestamp(consumer, topic, partition, low, high,
                                                                        timeout_s)))
        return gaps
    finally:
        consumer.close()


def _first_timestamp(consumer: Consumer, topic: str, partition: int, low: int, high: int,
                     timeout_s: float) -> int | None:
    """The timestamp (ms) of the first record at or after `low`, or None if the partition holds none."""
    if low >= high:
        return None
    consumer.assign([TopicPartition(topic, partition, low)])
    try:
        message = consumer.poll(timeout_s)
        if message is None or message.error() is not None:
            return None
        return message.timestamp()[1]
    finally:
        consumer.unassign()


def describe_gaps(topic: str, gaps: list[Gap]) -> str:
    """What is gone, for a person: one line per partition with the offsets lost and the time before which
    its records are gone."""
    lines = [f"{topic} no longer starts at its first event: {sum(g.missing for g in gaps)} offset(s) are gone "
             f"from {len(gaps)} partition(s)"]
    for g in gaps:
        if g.first_kept_ms is not None:
            since = datetime.fromtimestamp(g.first_kept_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            when = f"events before {since} are gone"
        else:
            when = "every event it held is gone"
        lines.append(f"  partition {g.partition}: offsets 0-{g.first_kept - 1} ({when})")
    return "\n".join(lines)
