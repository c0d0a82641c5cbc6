"""An in-memory stand-in for the Kafka edge of an agent, for unit tests only (integration tests use real Kafka).

`FakeBroker` holds partitions of messages, the group's committed positions (with their metadata) and every
committed transaction. `FakeProducer` is a transactional producer whose transactions land there when they
commit; the broker can be told to fail the next commit (retriable, fatal, or as from a non-member) or to hang it,
to refuse some records at `produce()` for good, or to report a full queue.
`FakeConsumer` consumes the broker's partitions, reports partition ends, pauses and resumes, answers
`committed()`, and runs the rebalance callbacks (inside `poll`/`consume`, as librdkafka does, or at once).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

Source = tuple[str, int]

FAILURES = {
    "retriable": (KafkaError._TIMED_OUT, False, True),
    "abortable": (KafkaError._TRANSPORT, False, False),
    "fatal": (KafkaError._FENCED, True, False),
    "not_member": (KafkaError.UNKNOWN_MEMBER_ID, False, False),
    "init_retriable": (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, False, True),
    "init_fatal": (KafkaError.INVALID_TRANSACTION_TIMEOUT, False, False),
}


def kafka_exception(kind: str) -> KafkaException:
    """A KafkaException like the client raises: `kind` is one of FAILURES."""
    code, fatal, retriable = FAILURES[kind]
    return KafkaException(KafkaError(code, f"fake {kind} failure", fatal=fatal, retriable=retriable))


@dataclass
class Transaction:
    """One committed transaction: its records (topic, key, value, headers) and positions ((topic, p) -> offset,
    metadata)."""

    records: list[tuple[str, Any, Any, Any]]
    offsets: dict[Source, tuple[int, str]]
    group_metadata: Any = None

    def on(self, topic: str) -> list[tuple[str, Any, Any, Any]]:
        """The records on `topic`."""
        return [r for r in self.records if r[0] == topic]


@dataclass
class FakeBroker:
    """Partitions, committed positions and transactions; failures to inject."""

    partitions: dict[Source, list[tuple[Any, bytes]]] = field(default_factory=dict)
    committed: dict[Source, tuple[int, str]] = field(default_factory=dict)
    transactions: list[Transaction] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    clients_made_on: list[str] = field(default_factory=list)
    """The name of the thread that made each client."""
    commit_failures: deque[str] = field(default_factory=deque)
    init_failures: deque[str] = field(default_factory=deque)
    refused: dict[bytes, int] = field(default_factory=dict)
    """Record values `produce()` refuses with a KafkaException of that error code, every time."""
    queue_full: int = 0
    """How many more `produce()` calls raise BufferError (a full local queue) before they succeed."""
    hang: threading.Event | None = None
    """While set to an unset event, commits wait for it (a hung broker)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, topic: str, partition: int, value: bytes, key: Any = None) -> int:
        """Add a message; returns its offset."""
        log = self.partitions.setdefault((topic, partition), [])
        log.append((key, value))
        return len(log) - 1

    def fail_next_commit(self, kind: str) -> None:
        """The next commit_transaction raises a KafkaException of `kind` (see FAILURES)."""
        self.commit_failures.append(kind)

    def producer(self, config: dict[str, Any]) -> FakeProducer:
        """A producer factory for `TransactionalPublisher(producer_factory=...)`."""
        return FakeProducer(self, config)

    def consumer(self) -> FakeConsumer:
        """A consumer factory."""
        return FakeConsumer(self)

    def made_client(self) -> None:
        self.clients_made_on.append(threading.current_thread().name)


class FakeProducer:
    """A transactional producer whose committed transactions land in the broker."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker, self.config = broker, config
        self.pending: list[tuple[str, Any, Any, Any]] = []
        self.offsets: dict[Source, tuple[int, str]] = {}
        self.group_metadata: Any = None
        self.in_transaction = False
        self.initialized = False
        self.aborts = 0
        broker.made_client()
        broker.producers.append(self)

    def init_transactions(self, timeout: float) -> None:
        if self.broker.init_failures:
            raise kafka_exception(self.broker.init_failures.popleft())
        self.initialized = True

    def begin_transaction(self) -> None:
        assert self.initialized and not self.in_transaction, "begin_transaction out of order"
        self.in_transaction = True
        self.pending, self.offsets = [], {}

    def produce(self, topic: str, key: Any = None, value: Any = None, headers: Any = None,
                partition: int = -1) -> None:
        assert self.in_transaction, "produce outside a transaction"
        if (code := self.broker.refused.get(value)) is not None:
            raise KafkaException(KafkaError(code, f"fake refusal of a record for {topic}"))
        if self.broker.queue_full:
            self.broker.queue_full -= 1
            raise BufferError("Local: Queue full")
        self.pending.append((topic, key, value, headers))

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group_metadata: Any,
                                    timeout: float) -> None:
        assert self.in_transaction
        self.offsets.update({(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in offsets})
        self.group_metadata = group_metadata

    def commit_transaction(self, timeout: float) -> None:
        assert self.in_transaction
        hang = self.broker.hang
        if hang is not None:
            hang.wait()
        if self.broker.commit_failures:
            raise kafka_exception(self.broker.commit_failures.popleft())
        if self is not self.broker.producers[-1]:
            raise kafka_exception("fatal")  # fenced by a newer producer with the same transactional id
        with self.broker.lock:
            self.broker.transactions.append(Transaction(list(self.pending), dict(self.offsets), self.group_metadata))
            self.broker.committed.update(self.offsets)
        self.in_transaction = False

    def abort_transaction(self, timeout: float) -> None:
        self.aborts += 1
        self.pending, self.offsets, self.in_transaction = [], {}, False


@dataclass
class FakeMessage:
    """A consumed message, or a partition end (`eof`)."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None = None
    _key: Any = None
    eof: bool = False

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> Any:
        return self._key

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self.eof else None


class FakeConsumer:
    """A group consumer of the broker's partitions; the test decides the assignment."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.topics: list[str] = []
        self.positions: dict[Source, int] = {}
        self.paused: set[Source] = set()
        self.at_end: set[Source] = set()
        self.closed = False
        self.committed_failures: deque[str] = deque()
        self._rebalances: deque[tuple[str, list[Source]]] = deque()
        broker.made_client()

    # ----- what the agent calls ------------------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], on_revoke: Callable[..., None],
                  on_lost: Callable[..., None]) -> None:
        self.topics = topics
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self._rebalance_pending()
        out: list[FakeMessage] = []
        for source, position in list(self.positions.items()):
            if source in self.paused:
                continue
            log = self.broker.partitions.get(source, [])
            while position < len(log) and len(out) < num_messages:
                key, value = log[position]
                out.append(FakeMessage(source[0], source[1], position, value, key))
                position += 1
            self.positions[source] = position
            if position >= len(log) and source not in self.at_end and len(out) < num_messages:
                self.at_end.add(source)
                out.append(FakeMessage(source[0], source[1], position, eof=True))
        return out

    def poll(self, timeout: float) -> FakeMessage | None:
        messages = self.consume(1, timeout)
        return messages[0] if messages else None

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.committed_failures:
            raise kafka_exception(self.committed_failures.popleft())
        out = []
        for tp in partitions:
            offset, metadata = self.broker.committed.get((tp.topic, tp.partition), (-1001, ""))
            out.append(TopicPartition(tp.topic, tp.partition, offset, metadata) if metadata
                       else TopicPartition(tp.topic, tp.partition, offset))
        return out

    def consumer_group_metadata(self) -> str:
        return f"group-metadata-of-{id(self)}"

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def close(self) -> None:
        self.closed = True

    # ----- what the test calls -------------------------------------------------------------------------

    def assign(self, *sources: Source, now: bool = True) -> None:
        """Hand partitions over (the assign callback runs now, or inside the next poll)."""
        self._rebalance("assign", list(sources), now)

    def revoke(self, *sources: Source, now: bool = True) -> None:
        """Take partitions back with a revoke callback."""
        self._rebalance("revoke", list(sources), now)

    def lose(self, *sources: Source, now: bool = True) -> None:
        """Take partitions away without a revoke (the session was lost)."""
        self._rebalance("lost", list(sources), now)

    def _rebalance(self, kind: str, sources: list[Source], now: bool) -> None:
        self._rebalances.append((kind, sources))
        if now:
            self._rebalance_pending()

    def _rebalance_pending(self) -> None:
        while self._rebalances:
            kind, sources = self._rebalances.popleft()
            partitions = [TopicPartition(t, p) for t, p in sources]
            if kind == "assign":
                for source in sources:
                    self.positions[source] = max(self.broker.committed.get(source, (0, ""))[0], 0)
                self.callbacks["assign"](self, partitions)
            else:
                self.callbacks[kind](self, partitions)
                for source in sources:
                    self.positions.pop(source, None)
                    self.at_end.discard(source)
