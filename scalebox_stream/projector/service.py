"""The projector: consumes the events topic into PostgreSQL, exactly once.

Each batch is applied in one database transaction together with the consumer positions, which live in
PostgreSQL (`projector_offsets`), not in Kafka: after a crash or a database outage the projector seeks
back to the positions the database holds, and the event-id table makes any overlap a no-op.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC
from scalebox_stream.projector.apply import apply_events, record_new_event_ids
from scalebox_stream.projector.migrate import migrate

log = logging.getLogger(__name__)

PROJECTOR_GROUP = "sbx.projector"


@dataclass
class ProjectorStats:
    """Counters of one projector process."""

    batches: int = 0
    events: int = 0
    applied: int = 0
    dead_letters: int = 0
    db_reconnects: int = 0


class Projector:
    """Consumes `sbx.events` into the task perspective."""

    def __init__(self, bootstrap: str, dsn: str, batch_size: int = 1000, group: str = PROJECTOR_GROUP,
                 topic: str = EVENTS_TOPIC) -> None:
        self.dsn = dsn
        self.batch_size = batch_size
        self.topic = topic
        self.codec = EventCodec()
        self.stats = ProjectorStats()
        # Eager assignment: on_assign replaces the positions with the ones PostgreSQL holds.
        self.consumer = Consumer(consumer_config(
            bootstrap, group, **{"enable.partition.eof": True, "partition.assignment.strategy": "range"}))
        self.dead_letter_producer = Producer(producer_config(bootstrap))
        self.conn = self._connect(wait_s=60)
        migrate(self.conn)
        self._stop = threading.Event()
        self._eof: set[int] = set()
        self._assigned: list[int] = []

    def _connect(self, wait_s: float) -> psycopg.Connection:
        """Connect, retrying while the database is unreachable (up to `wait_s`, forever if negative)."""
        deadline = time.monotonic() + wait_s
        delay = 0.2
        while True:
            try:
                return psycopg.connect(self.dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                if wait_s >= 0 and time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL unreachable (%s); retrying in %.1fs", str(exc).strip(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def request_stop(self, *_: object) -> None:
        """Stop after the current batch (signal-handler safe)."""
        self._stop.set()

    # ----- positions -----------------------------------------------------------------------------

    def _stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM projector_offsets WHERE topic = %s AND partition = ANY(%s)",
            (self.topic, partitions)).fetchall()
        return dict(rows)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets([tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
        self._assigned = sorted({*self._assigned, *(tp.partition for tp in partitions)})
        self._eof -= {tp.partition for tp in partitions}
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._assigned = [p for p in self._assigned if p not in gone]
        consumer.unassign()

    def _rewind(self) -> None:
        """Seek every assigned partition back to the position PostgreSQL holds."""
        stored = self._stored_offsets(self._assigned)
        for partition in self._assigned:
            offset = stored.get(partition, OFFSET_BEGINNING)
            self.consumer.seek(TopicPartition(self.topic, partition, offset))
        self._eof.clear()

    # ----- loop ----------------------------------------------------------------------------------

    def run(self, until_caught_up: bool = False, install_signals: bool = True) -> ProjectorStats:
        """Project batches until stopped (or, with `until_caught_up`, until every partition is at its end)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                messages = self.consumer.consume(self.batch_size, timeout=0.2)
                self._project(messages)
                if until_caught_up and self._assigned and set(self._assigned) <= self._eof:
                    break
        finally:
            self.consumer.close()
            self.dead_letter_producer.flush(10)
            self.conn.close()
        return self.stats

    def _project(self, messages: list[Message]) -> None:
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
                self._eof.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                self._eof.add(message.partition())
            else:
                log.warning("consumer error: %s", error)
        if not records:
            return
        while not self._stop.is_set():
            try:
                self._write_batch(records)
                return
            except psycopg.OperationalError as exc:
                log.warning("PostgreSQL failed mid-batch (%s); reconnecting", str(exc).strip())
                self.stats.db_reconnects += 1
                self.conn.close()
                self.conn = self._connect(wait_s=-1)
                self._rewind()
                return

    def _decode(self, records: list[Message]) -> tuple[list[Event], list[tuple[Message, str]]]:
        events: dict[str, Event] = {}
        poison = []
        for message in records:
            try:
                event = self.codec.decode(message.value())
                events.setdefault(event.event_id, event)
            except DecodeError as exc:
                poison.append((message, str(exc)))
        return list(events.values()), poison

    def _write_batch(self, records: list[Message]) -> None:
        events, poison = self._decode(records)
        positions: dict[int, int] = {}
        for message in records:
            positions[message.partition()] = max(positions.get(message.partition(), 0), message.offset() + 1)
        with self.conn.transaction(), self.conn.cursor() as cur:
            new_ids = record_new_event_ids(cur, events)
            fresh = [e for e in events if e.event_id in new_ids]
            apply_events(cur, fresh)
            for message, reason in poison:
                cur.execute(
                    """INSERT INTO dead_letters (topic, partition, "offset", reason) VALUES (%s, %s, %s, %s)
                       ON CONFLICT DO NOTHING""", (message.topic(), message.partition(), message.offset(), reason))
            cur.executemany(
                """INSERT INTO projector_offsets (topic, partition, next_offset) VALUES (%s, %s, %s)
                   ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset""",
                [(self.topic, p, o) for p, o in positions.items()])
        for message, reason in poison:
            self._dead_letter(message, reason)
        self.stats.batches += 1
        self.stats.events += len(records)
        self.stats.applied += len(fresh)

    def _dead_letter(self, message: Message, reason: str) -> None:
        self.stats.dead_letters += 1
        log.error("undecodable event at %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(),
                  reason)
        self.dead_letter_producer.produce(DEAD_LETTER_TOPIC, key=message.key(), value=message.value(), headers=[
            ("error", reason.encode()), ("source_topic", message.topic().encode()),
            ("source_partition", str(message.partition()).encode()),
            ("source_offset", str(message.offset()).encode()), ("consumer", b"projector")])
        self.dead_letter_producer.poll(0)
