"""The projector's positions: stored in PostgreSQL (`projector_offsets`) in the transaction of the rows they
cover, read back on assignment and after a failure (rewind), never committed to Kafka."""

from __future__ import annotations

import logging
from typing import Protocol

import psycopg
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

log = logging.getLogger(__name__)

_LOAD = "SELECT partition, next_offset FROM projector_offsets WHERE topic = %s AND partition = ANY(%s)"
_STORE = """INSERT INTO projector_offsets (topic, partition, next_offset)
            SELECT %b, * FROM unnest(%b::int[], %b::bigint[])
            ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"""


class AssigningConsumer(Protocol):
    """The part of a Kafka consumer the offset store drives."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def unassign(self) -> None: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]: ...


class OffsetStore:
    """Positions of the partitions assigned to this projector, and which of them were read to their end."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: list[int] = []
        self.committed: dict[int, int] = {}
        """Next offset per partition, as of the last batch committed (or the last rewind)."""
        self.at_end: set[int] = set()

    def load(self, conn: psycopg.Connection, partitions: list[int]) -> dict[int, int]:
        """The stored next offset of each of `partitions` that has one."""
        return dict(conn.execute(_LOAD, (self.topic, partitions)).fetchall())

    def store(self, cur: psycopg.Cursor, positions: dict[int, int]) -> None:
        """Write `positions` in the caller's transaction (with the rows they cover; may be pipelined)."""
        cur.execute(_STORE, (self.topic, list(positions), list(positions.values())))

    def assign(self, consumer: AssigningConsumer, conn: psycopg.Connection | None,
               partitions: list[TopicPartition]) -> bool:
        """Start newly assigned partitions at their stored positions (the beginning if none).

        If PostgreSQL cannot tell them, the partitions are held paused; returns False (rewind later)."""
        try:
            if conn is None:
                raise psycopg.OperationalError("not connected")
            stored: dict[int, int] | None = self.load(conn, [tp.partition for tp in partitions])
        except psycopg.Error as exc:  # the database is down: hold the partitions until it is back
            log.warning("cannot read stored positions (%s); pausing until PostgreSQL is back", str(exc).strip())
            stored = None
        for tp in partitions:
            tp.offset = (stored or {}).get(tp.partition, OFFSET_BEGINNING)
        self.assigned = sorted({*self.assigned, *(tp.partition for tp in partitions)})
        self.at_end -= {tp.partition for tp in partitions}
        consumer.assign(partitions)
        if stored is None:
            consumer.pause(partitions)
            return False
        return True

    def revoke(self, consumer: AssigningConsumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.assigned = [p for p in self.assigned if p not in gone]
        consumer.unassign()

    def rewind(self, consumer: AssigningConsumer, conn: psycopg.Connection) -> None:
        """Restart every assigned partition at its stored position (records fetched already are dropped)."""
        stored = self.load(conn, self.assigned)
        partitions = [TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in self.assigned]
        if partitions:
            consumer.assign(partitions)
            consumer.resume(partitions)
        self.committed = {p: o for p, o in stored.items() if p in self.assigned}
        self.at_end.clear()

    def advanced(self, positions: dict[int, int]) -> None:
        """A batch ending at `positions` was committed."""
        self.committed.update(positions)

    def caught_up(self) -> bool:
        """True once every assigned partition (there is one at least) was read to its end."""
        return bool(self.assigned) and set(self.assigned) <= self.at_end

    def lag(self, consumer: AssigningConsumer) -> int:
        """Events in the assigned partitions not committed yet, from cached high watermarks (no round trip)."""
        lag = 0
        for partition in self.assigned:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high >= 0:
                lag += max(0, high - self.committed.get(partition, 0))
        return lag
