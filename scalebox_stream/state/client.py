"""A client of the state owners: send a command, wait for its reply.

The client reads one partition of the replies topic (picked at random, `assign`ed at its end before the first
request, so no reply can slip past) and matches replies to requests by id; the other clients' replies on that
partition are skipped. It never commits (no group state): a new client starts at the end again. Replies are
not in the owner's transaction: it sends each as soon as it applied the command, before it commits (state/owner.py
says why such an answer always stands: whoever applies the command again answers the same), and the client reads
them `read_uncommitted`, so no transaction holds them back. The first answer read for a request is its answer.

A command, once its produce is acknowledged, is on the log and will be applied exactly once by some owner; the
client therefore keeps waiting rather than resending. It resends (with the same request id, which the owner
answers with its first answer) only every `resend_s`, for the case the produce itself was lost; after
`timeout_s` it gives up with TimeoutError.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.state.model import Command, Reply, StateTopics, partition_of

log = logging.getLogger(__name__)
_NOT_YET = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART,
                      KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})
"""Errors of a topic created a moment ago: unknown to the client's metadata yet, or its leader not elected."""


class StateClient:
    """Thread-safe: any number of threads may call `call` and `scatter` at once."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, timeout_s: float = 30.0,
                 resend_s: float = 5.0, reply_partition: int | None = None) -> None:
        self.topics = topics or StateTopics.from_env()
        self.timeout_s, self.resend_s = timeout_s, resend_s
        self.client_id = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._producer = Producer(producer_config(bootstrap, **{"linger.ms": 0, "compression.type": "none",
                                                                "retry.backoff.ms": 10}))
        self._consumer = Consumer(consumer_config(bootstrap, f"sbx.state.client.{self.client_id}", **{
            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 100, "fetch.error.backoff.ms": 10,
            "enable.partition.eof": False}))
        self.partitions, reply_partitions = self._partition_counts()
        self.reply_partition = random.randrange(reply_partitions) if reply_partition is None else reply_partition
        high = self._reply_end()
        self._consumer.assign([TopicPartition(self.topics.replies, self.reply_partition, high)])
        self._waiting: dict[str, Future[Reply]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="state-replies", daemon=True)
        self._reader.start()

    def _partition_counts(self, timeout_s: float = 10.0) -> tuple[int, int]:
        """The partitions of the commands and replies topics, as the broker has them (every client maps an item
        to a partition with the same count)."""
        deadline = time.monotonic() + timeout_s
        while True:
            topics = self._consumer.list_topics(timeout=timeout_s).topics
            found = [topics.get(name) for name in (self.topics.commands, self.topics.replies)]
            if all(t is not None and t.error is None and t.partitions for t in found):
                return len(found[0].partitions), len(found[1].partitions)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no state topics {self.topics.commands}, {self.topics.replies}: has a state "
                                   "owner ever run?")
            time.sleep(0.2)

    def _reply_end(self, timeout_s: float = 10.0) -> int:
        """The end offset of the reply partition (where this client's replies will be). A topic created a moment
        ago may be unknown to the client's first metadata, or have no leader yet: asked again until `timeout_s`."""
        tp = TopicPartition(self.topics.replies, self.reply_partition)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)[1]
            except KafkaException as exc:
                if exc.args[0].code() not in _NOT_YET or time.monotonic() > deadline:
                    raise RuntimeError(f"no replies topic {self.topics.replies} ({exc.args[0].str()}): "
                                       "has a state owner ever run?") from None
                time.sleep(0.2)

    def new_id(self) -> str:
        """A request id unique to this client."""
        return f"{self.client_id}-{next(self._seq)}"

    def command(self, op: str, kind: str, app: str, name: str, **fields: Any) -> Command:
        """A command with a fresh id, answered on this client's reply partition."""
        return Command(self.new_id(), op, kind, app, name, reply_to=self.reply_partition, **fields)

    def call(self, cmd: Command, partition: int | None = None) -> Reply:
        """Send one command (to its item's partition unless given) and return its reply."""
        if partition is None:
            partition = partition_of(cmd.app, cmd.name, self.partitions)
        return self._wait([(cmd, partition)])[0]

    def scatter(self, cmd: Command) -> list[Reply]:
        """Send a copy of a pattern command to every partition; their replies, in partition order."""
        copies = [(Command(**{**cmd.__dict__, "id": f"{cmd.id}/{p}"}), p) for p in range(self.partitions)]
        return self._wait(copies)

    def _wait(self, sends: list[tuple[Command, int]]) -> list[Reply]:
        futures = []
        with self._lock:
            for cmd, _ in sends:
                futures.append(self._waiting.setdefault(cmd.id, Future()))
        try:
            deadline = time.monotonic() + self.timeout_s
            for cmd, partition in sends:
                self._send(cmd, partition)
            replies = []
            for future, (cmd, partition) in zip(futures, sends, strict=True):
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no reply to {cmd.op} {cmd.kind} {cmd.name!r} in {self.timeout_s:.0f} s "
                                           "(is a state owner running?)")
                    try:
                        replies.append(future.result(min(left, self.resend_s)))
                        break
                    except FutureTimeout:
                        log.info("no reply to %s yet; sending it again", cmd.id)
                        self._send(cmd, partition)
            return replies
        finally:
            with self._lock:
                for cmd, _ in sends:
                    self._waiting.pop(cmd.id, None)

    def _send(self, cmd: Command, partition: int) -> None:
        self._producer.produce(self.topics.commands, key=cmd.id.encode(), value=cmd.to_json(), partition=partition)
        self._producer.poll(0)

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                first = self._consumer.poll(0.05)  # consume(n, t) would wait for n messages
                messages = [] if first is None else [first, *self._consumer.consume(100, timeout=0)]
            except RuntimeError:  # closed under us
                return
            self._producer.poll(0)
            for m in messages:
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("reply consumer: %s", m.error())
                    continue
                with self._lock:
                    future = self._waiting.get(m.key().decode()) if m.key() else None
                if future is not None and not future.done():
                    try:
                        future.set_result(Reply.from_json(m.value()))
                    except Exception as exc:  # a malformed reply: the caller sees it
                        future.set_exception(exc)

    def close(self) -> None:
        """Stop reading replies and release the Kafka clients."""
        self._closed.set()
        self._reader.join(2)
        self._producer.flush(5)
        self._consumer.close()

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
