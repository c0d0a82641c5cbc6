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

No thread reads the replies in the background: the callers waiting read them themselves, one at a time (the
poller), and the poller hands the others their replies (`_Call.wake`); when its own calls are answered it passes
the polling on to a caller still waiting. A single caller thus reads its reply on its own thread, with no
hand-over between threads. Between calls nobody reads: the consumer prefetches at most `PREFETCH_KB` meanwhile
(the other clients' replies on the partition), which the next call skips.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.state.model import Command, Reply, StateTopics, partition_of

log = logging.getLogger(__name__)
_NOT_YET = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART,
                      KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})
"""Errors of a topic created a moment ago: unknown to the client's metadata yet, or its leader not elected."""
PREFETCH_KB = 1024
"""What the reply consumer fetches ahead while no call reads it (librdkafka's default is 64 MB)."""
POLL_SLICE_S = 0.1
"""The poller looks at its deadline and resend time at least this often."""


class _Call:
    """The replies one `_wait` waits for, by request id (None: not read yet); `wake` is set when they are all
    read, or when the caller is to take over the polling."""

    __slots__ = ("missing", "replies", "wake")

    def __init__(self, ids: list[str]) -> None:
        self.replies: dict[str, Reply | Exception | None] = dict.fromkeys(ids)
        self.missing = len(self.replies)
        self.wake = threading.Event()


class StateClient:
    """Thread-safe: any number of threads may call `call` and `scatter` at once."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, timeout_s: float = 30.0,
                 resend_s: float = 5.0, reply_partition: int | None = None, *, producer: Any = None,
                 consumer: Any = None) -> None:
        """`producer`, `consumer`: the Kafka clients to use (tests pass fakes); made for `bootstrap` if None."""
        self.topics = topics or StateTopics.from_env()
        self.timeout_s, self.resend_s = timeout_s, resend_s
        self.client_id = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        if producer is None:  # (a Producer is falsy with nothing queued: no `or`)
            producer = Producer(producer_config(bootstrap, **{"linger.ms": 0, "compression.type": "none",
                                                              "retry.backoff.ms": 10}))
        self._producer = producer
        self._consumer = consumer if consumer is not None else Consumer(consumer_config(
            bootstrap, f"sbx.state.client.{self.client_id}", **{
            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 100, "fetch.error.backoff.ms": 10,
            "enable.partition.eof": False, "queued.max.messages.kbytes": PREFETCH_KB,
            "max.poll.interval.ms": 86400000}))
        self.partitions, reply_partitions = self._partition_counts()
        self.reply_partition = random.randrange(reply_partitions) if reply_partition is None else reply_partition
        high = self._reply_end()
        self._consumer.assign([TopicPartition(self.topics.replies, self.reply_partition, high)])
        self._calls: dict[str, _Call] = {}
        """The calls waiting, by the request ids they wait for."""
        self._poller: _Call | None = None
        """The call whose thread reads the replies now (None: nobody does)."""
        self._lock = threading.Lock()

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

    def call_many(self, cmds: list[Command]) -> list[Reply]:
        """Send several commands at once (each to its item's partition) and return their replies, in order."""
        return self._wait([(cmd, partition_of(cmd.app, cmd.name, self.partitions)) for cmd in cmds])

    def scatter(self, cmd: Command) -> list[Reply]:
        """Send a copy of a pattern command to every partition; their replies, in partition order."""
        copies = [(Command(**{**cmd.__dict__, "id": f"{cmd.id}/{p}"}), p) for p in range(self.partitions)]
        return self._wait(copies)

    def _wait(self, sends: list[tuple[Command, int]]) -> list[Reply]:
        call = _Call([cmd.id for cmd, _ in sends])
        with self._lock:
            for cmd, _ in sends:
                self._calls[cmd.id] = call
        try:
            now = time.monotonic()
            deadline, resend_at = now + self.timeout_s, now + self.resend_s
            for cmd, partition in sends:
                self._send(cmd, partition)
            while True:
                self._await(call, min(deadline, resend_at))
                if not call.missing:
                    break
                now = time.monotonic()
                unanswered = [(cmd, p) for cmd, p in sends if call.replies[cmd.id] is None]
                if now >= deadline:
                    cmd = unanswered[0][0]
                    raise TimeoutError(f"no reply to {cmd.op} {cmd.kind} {cmd.name!r} in {self.timeout_s:.0f} s "
                                       "(is a state owner running?)")
                if now >= resend_at:
                    for cmd, partition in unanswered:
                        log.info("no reply to %s yet; sending it again", cmd.id)
                        self._send(cmd, partition)
                    resend_at = now + self.resend_s
            replies = []
            for cmd, _ in sends:
                reply = call.replies[cmd.id]
                if isinstance(reply, Exception):
                    raise reply
                assert reply is not None
                replies.append(reply)
            return replies
        finally:
            with self._lock:
                for cmd, _ in sends:
                    self._calls.pop(cmd.id, None)
                self._pass_polling()  # it may have been asked to take the polling over, and leaves instead

    def _await(self, call: _Call, until: float) -> None:
        """Wait until the call is answered or `until` (monotonic): read the replies if nobody else does, else wait
        for the poller to hand them over (or the polling)."""
        while True:
            with self._lock:
                if not call.missing:
                    return
                if self._poller is None:
                    self._poller = call
                    break
                call.wake.clear()
            left = until - time.monotonic()
            if left <= 0 or not call.wake.wait(left):
                return
        try:
            while call.missing:
                left = until - time.monotonic()
                if left <= 0:
                    return
                self._read(min(left, POLL_SLICE_S))
        finally:
            with self._lock:
                self._poller = None
                self._pass_polling(call)

    def _pass_polling(self, leaving: _Call | None = None) -> None:
        """With nobody polling, wake a call still waiting (not `leaving`) to take the polling over. Under the lock."""
        if self._poller is None:
            waiting = next((c for c in self._calls.values() if c.missing and c is not leaving), None)
            if waiting is not None:
                waiting.wake.set()

    def _send(self, cmd: Command, partition: int) -> None:
        self._producer.produce(self.topics.commands, key=cmd.id.encode(), value=cmd.to_json(), partition=partition)
        self._producer.poll(0)

    def _read(self, timeout_s: float) -> None:
        """Read what replies came within `timeout_s` and hand each to the call waiting for it (others' replies on
        the partition, and repeated answers, are skipped)."""
        first = self._consumer.poll(timeout_s)  # consume(n, t) would wait for n messages
        messages = [] if first is None else [first, *self._consumer.consume(100, timeout=0)]
        self._producer.poll(0)
        for m in messages:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("reply consumer: %s", m.error())
                continue
            request_id = m.key().decode() if m.key() else ""
            with self._lock:
                call = self._calls.get(request_id)
                if call is None or call.replies[request_id] is not None:
                    continue
                try:
                    call.replies[request_id] = Reply.from_json(m.value())
                except Exception as exc:  # a malformed reply: the caller sees it
                    call.replies[request_id] = exc
                call.missing -= 1
                if not call.missing:
                    call.wake.set()

    def close(self) -> None:
        """Release the Kafka clients."""
        self._producer.flush(5)
        self._consumer.close()

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
