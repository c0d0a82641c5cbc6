"""In-memory stand-ins for the projector's Kafka edge: records, a consumer over per-partition logs, a producer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from fakes.kafka import FakeMessage

KEY = b"k"
"""The key of every record in these logs."""


def eof(topic: str, partition: int, offset: int) -> FakeMessage:
    return FakeMessage(topic, partition, offset, eof=True)


class FakeConsumer:
    """A consumer over in-memory partition logs: the first fetch after `subscribe` assigns `partitions` (calling
    on_assign, as the group protocol does inside poll); it reports the end of each partition once, as
    `enable.partition.eof` does."""

    def __init__(self, config: dict | None = None, logs: dict[int, list[bytes]] | None = None) -> None:
        self.config = config or {}
        self.logs: dict[int, list[bytes]] = logs if logs is not None else {0: []}
        self.topic = ""
        self.positions: dict[int, int] = {}
        self.paused: set[int] = set()
        self.calls: list[tuple] = []
        self.closed = False
        self._on_assign: Callable | None = None
        self._on_revoke: Callable | None = None
        self._pending_assign = False
        self._eof_told: set[int] = set()
        self.watermarks: dict[int, int] | None = None

    # ----- the consumer API the projector uses ----------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Callable | None = None,
                  on_revoke: Callable | None = None) -> None:
        self.topic = topics[0]
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._pending_assign = True
        self.calls.append(("subscribe", tuple(topics)))

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("assign", tuple((tp.partition, tp.offset) for tp in partitions)))
        self.positions = {tp.partition: 0 if tp.offset == OFFSET_BEGINNING else tp.offset for tp in partitions}
        self._eof_told -= set(self.positions)

    def unassign(self) -> None:
        self.calls.append(("unassign",))
        self.positions = {}

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", tuple(tp.partition for tp in partitions)))
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", tuple(tp.partition for tp in partitions)))
        self.paused -= {tp.partition for tp in partitions}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self._rebalance_if_due()
        out: list[FakeMessage] = []
        for partition in sorted(self.positions):
            if partition in self.paused:
                continue
            log = self.logs.get(partition, [])
            while len(out) < num_messages and self.positions[partition] < len(log):
                offset = self.positions[partition]
                out.append(FakeMessage(self.topic, partition, offset, log[offset], KEY))
                self.positions[partition] = offset + 1
            if len(out) < num_messages and self.positions[partition] >= len(log) \
                    and partition not in self._eof_told:
                self._eof_told.add(partition)
                out.append(eof(self.topic, partition, len(log)))
        return out

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        if self.watermarks is not None:
            return 0, self.watermarks.get(partition.partition, -1)
        return 0, len(self.logs.get(partition.partition, []))

    def close(self) -> None:
        self.closed = True

    # ----- test controls ------------------------------------------------------------------------

    def append(self, partition: int, *values: bytes) -> None:
        """More records arrive in `partition` (its end is reported again when reached)."""
        self.logs.setdefault(partition, []).extend(values)
        self._eof_told.discard(partition)

    def revoke_all(self) -> None:
        """The group takes every partition away (calls on_revoke)."""
        assert self._on_revoke is not None
        self._on_revoke(self, [TopicPartition(self.topic, p) for p in sorted(self.positions)])

    def reassign(self) -> None:
        """The next fetch assigns the partitions again (as after a rebalance)."""
        self._pending_assign = True

    def _rebalance_if_due(self) -> None:
        if self._pending_assign and self._on_assign is not None:
            self._pending_assign = False
            self._on_assign(self, [TopicPartition(self.topic, p) for p in sorted(self.logs)])


@dataclass
class FakeProducer:
    """A producer that keeps what it was given; `unacknowledged` is what `flush` reports as not delivered."""

    config: dict = field(default_factory=dict)
    produced: list[dict] = field(default_factory=list)
    unacknowledged: int = 0
    flushes: int = 0

    def produce(self, topic: str, key: bytes | str | None = None, value: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> None:
        self.produced.append({"topic": topic, "key": key, "value": value, "headers": dict(headers or [])})

    def flush(self, timeout: float = -1) -> int:
        self.flushes += 1
        return self.unacknowledged


def records(topic: str, values: list[bytes], partition: int = 0, first_offset: int = 0) -> list[FakeMessage]:
    """Consumed records holding `values`, at consecutive offsets of one partition."""
    return [FakeMessage(topic, partition, first_offset + i, v, KEY) for i, v in enumerate(values)]
