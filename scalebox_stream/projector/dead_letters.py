"""Where records the projector cannot take go: the dead-letter topic and the `dead_letters` table."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

import psycopg

from scalebox_stream import metrics
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC
from scalebox_stream.projector.batch import DeadLetter
from scalebox_stream.projector.errors import Outage

log = logging.getLogger(__name__)

_RECORD = """INSERT INTO dead_letters (topic, partition, "offset", reason) VALUES (%s, %s, %s, %s)
             ON CONFLICT DO NOTHING"""


class DeadLetterProducer(Protocol):
    """The part of a Kafka producer the sink uses."""

    def produce(self, topic: str, key: bytes | str | None = None, value: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def flush(self, timeout: float) -> int: ...


class DeadLetterSink:
    """Writes dead letters in the batch's transaction and to the dead-letter topic; counts the committed ones.

    The topic is written and flushed before the transaction commits: a crash in between sends them again
    (at least once), never loses them."""

    def __init__(self, producer: DeadLetterProducer, flush_timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.flush_timeout_s = flush_timeout_s
        self.committed: Counter[str] = Counter()
        """Dead letters committed, by kind."""

    def write(self, cur: psycopg.Cursor, dead: list[DeadLetter]) -> None:
        """Record `dead` in the caller's transaction and publish them; raises Outage if Kafka does not
        acknowledge them (the transaction must then not commit)."""
        if not dead:
            return
        cur.executemany(_RECORD, [(d.record.topic(), d.record.partition(), d.record.offset(),
                                   f"{d.kind}: {d.reason}") for d in dead])
        self.publish(dead)

    def publish(self, dead: list[DeadLetter]) -> None:
        for d in dead:
            m = d.record
            log.error("%s event at %s[%d]@%d: %s", d.kind, m.topic(), m.partition(), m.offset(), d.reason)
            self.producer.produce(DEAD_LETTER_TOPIC, key=m.key(), value=m.value(), headers=[
                ("error", d.reason.encode()), ("kind", d.kind.encode()), ("source_topic", m.topic().encode()),
                ("source_partition", str(m.partition()).encode()), ("source_offset", str(m.offset()).encode()),
                ("consumer", b"projector")])
        if self.producer.flush(self.flush_timeout_s) != 0:
            raise Outage("the dead-letter topic did not acknowledge")

    def count_committed(self, dead: list[DeadLetter]) -> None:
        """The transaction holding `dead` committed."""
        for d in dead:
            self.committed[d.kind] += 1
            metrics.DEAD_LETTERS.labels(d.kind).inc()

    def close(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)
