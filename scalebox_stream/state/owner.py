"""An owner process: applies the commands of its partitions in order, exactly once.

One consumer of the owners' group reads the commands topic and hands each partition's commands to that
partition's worker thread. A worker applies what has gathered as one batch and commits its effects in one Kafka
transaction of its own producer: the changed items to the compacted changelog (the command's partition), the
replies, a StateChanged event per change on `sbx.events`, and the consumed offset. Partitions commit in
parallel; within a partition batches follow one another, in log order.

Each partition has its own transactional id (`<group>.p<N>`), whoever owns it: an owner assigned a partition
first initializes that id, which aborts an open transaction of the previous owner (a crashed or cut-off one)
and fences it, then reads the changelog partition to its end (nothing is left pending in it) and only then
applies commands, from the committed offset on. A batch whose transaction fails is applied again from the
committed state (nothing of it was committed).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import consumer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.kafka.transactions import TransactionalPublisher, TransactionHung
from scalebox_stream.state.machine import Change, apply
from scalebox_stream.state.model import Command, Item, Key, StateTopics, decode_key, encode_key

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 120.0
BATCH_MAX = 1000


def default_owner_id() -> str:
    """This host's first owner: a restarted owner with the same id takes over its group membership at once
    (two live owners need two ids)."""
    return f"{socket.gethostname()}.0"


@dataclass
class OwnerStats:
    """Counts since start."""

    commands: int = 0
    changes: int = 0
    batches: int = 0
    restored: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, commands: int, changes: int) -> None:
        with self.lock:
            self.commands += commands
            self.changes += changes
            self.batches += 1


class Owner:
    """Applies state commands for the partitions the group gives it, until `stop` is set."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, owner_id: str | None = None,
                 events_topic: str = EVENTS_TOPIC, stop: threading.Event | None = None,
                 on_ready: Callable[[], None] | None = None, static: bool = True) -> None:
        self.bootstrap, self.topics = bootstrap, topics or StateTopics.from_env()
        self.owner_id = owner_id or default_owner_id()
        self.static = static
        """Static membership (the owner id as `group.instance.id`): a restarted owner takes its partitions back at
        once, but a stopped one keeps them until its session times out. Not static: it leaves the group when it
        stops, so the others take over at once (`scalebox run`'s owner)."""
        self.events_topic, self.stop = events_topic, stop or threading.Event()
        self.on_ready = on_ready
        self.workers: dict[int, PartitionWorker] = {}
        self.stats = OwnerStats()
        self.consumer: Consumer | None = None
        self.reply_partitions = self.topics.reply_partitions
        self.group_metadata: object = None
        """The consumer's group metadata, refreshed by the polling thread after each poll: a worker thread
        asking the consumer for it would wait for the poll in progress to return."""

    def run(self) -> OwnerStats:
        """Serve until stopped."""
        t = self.topics
        membership = {"group.instance.id": f"{t.group}.{self.owner_id}"} if self.static else {}
        consumer = self.consumer = Consumer(consumer_config(self.bootstrap, t.group, **{
            **membership, "session.timeout.ms": 10000, "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 10}))
        replies = consumer.list_topics(t.replies, timeout=30).topics[t.replies]
        if replies.error is not None or not replies.partitions:
            raise RuntimeError(f"no replies topic {t.replies}: {replies.error}")
        self.reply_partitions = len(replies.partitions)
        consumer.subscribe([t.commands], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        ready = False
        try:
            while not self.stop.is_set():
                messages = _drain(consumer, 0.1)
                self.group_metadata = consumer.consumer_group_metadata()
                for m in messages:
                    if m.error() is not None:
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", m.error())
                        continue
                    worker = self.workers.get(m.partition())
                    if worker is not None:
                        worker.queue.put(m)
                if not ready and self.workers and all(w.ready.is_set() for w in self.workers.values()):
                    ready = True
                    log.info("owner %s serving partitions %s (%s items restored)", self.owner_id, sorted(self.workers),
                             [self.stats.restored.get(p) for p in sorted(self.workers)])
                    if self.on_ready:
                        self.on_ready()
                for p, worker in list(self.workers.items()):
                    if not worker.is_alive():
                        raise RuntimeError(f"the worker of partition {p} ended: {worker.failure}")
        finally:
            self._stop_workers(list(self.workers))
            consumer.close()
        return self.stats

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start a worker per new partition (it fences the previous owner and restores before applying)."""
        for tp in partitions:
            worker = self.workers[tp.partition] = PartitionWorker(self, tp.partition)
            worker.start()
        log.info("owner %s assigned partitions %s", self.owner_id, [tp.partition for tp in partitions])

    def new_publisher(self, partition: int) -> TransactionalPublisher:
        """The transactional publisher of a partition, initialized: any open transaction of the partition's
        previous owner is aborted, and that owner fenced."""
        return TransactionalPublisher(self.bootstrap, f"{self.topics.group}.p{partition}", timeout_s=10.0,
                                      stop=self.stop)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._stop_workers([tp.partition for tp in partitions])
        log.info("owner %s gave up partitions %s", self.owner_id, [tp.partition for tp in partitions])

    def _stop_workers(self, partitions: list[int]) -> None:
        """Let each worker finish the commands handed to it, then stop it."""
        workers = [w for p in partitions if (w := self.workers.pop(p, None)) is not None]
        for worker in workers:
            worker.queue.put(None)
        for worker in workers:
            worker.join(60)

    def restore(self, partition: int) -> dict[Key, Item]:
        """Read one changelog partition to its end; the latest value of each key wins."""
        items: dict[Key, Item] = {}
        restorer = Consumer(consumer_config(self.bootstrap, f"{self.topics.group}.restore", **{
            "enable.partition.eof": True, "fetch.wait.max.ms": 10}))
        restorer.assign([TopicPartition(self.topics.changelog, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        try:
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"changelog partition {partition} not read to its end in "
                                       f"{RESTORE_TIMEOUT_S:.0f} s")
                for m in restorer.consume(1000, timeout=0.2):
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            self.stats.restored[partition] = len(items)
                            return items
                        raise KafkaException(m.error())
                    key = decode_key(m.key())
                    if m.value() is None:
                        items.pop(key, None)
                    else:
                        items[key] = Item.from_json(m.value())
        finally:
            restorer.close()

    def event(self, change: Change) -> bytes:
        """The StateChanged event of a change."""
        kind, app, name = change.key
        payload = {"kind": kind, "name": name, "value": str(change.item.value), "op": change.op,
                   "old_value": None if change.old is None else str(change.old), "request_id": change.request_id,
                   "version": change.item.version}
        return _CODEC.encode(Event("StateChanged", app, payload, producer=f"state-owner/{self.owner_id}"))


_CODEC = EventCodec()


class PartitionWorker(threading.Thread):
    """Applies one partition's commands, a batch per transaction."""

    def __init__(self, owner: Owner, partition: int) -> None:
        super().__init__(name=f"state-p{partition}", daemon=True)
        self.owner, self.partition = owner, partition
        self.store: dict[Key, Item] = {}
        self.publisher: TransactionalPublisher | None = None
        self.queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.publisher = self.owner.new_publisher(self.partition)
            self.store = self.owner.restore(self.partition)
            self.ready.set()
            while True:
                first = self.queue.get()
                if first is None:
                    return
                batch, stopping = [first], False
                while len(batch) < BATCH_MAX:
                    try:
                        m = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if m is None:
                        stopping = True
                        break
                    batch.append(m)
                self._commit(batch)
                if stopping:
                    return
        except BaseException as exc:
            self.ready.set()
            self.failure = exc
            log.exception("partition %s worker failed", self.partition)

    def _commit(self, messages: list[Message]) -> None:
        """Apply a batch and commit it. A failed transaction is aborted and the batch applied again; after a
        fatal error or a stuck call the producer is replaced and the partition restored from its changelog first
        (a commit that did happen is then in the changelog, and its requests are answered from there)."""
        t, owner = self.owner.topics, self.owner
        while True:
            overlay: dict[Key, Item] = {}
            records: list[_Record] = []
            view = ChainMap(overlay, self.store)
            replies = []
            for m in messages:
                try:
                    cmd = Command.from_json(m.value())
                except (ValueError, TypeError, KeyError) as exc:
                    log.warning("dropping a malformed command at %s/%s: %s", self.partition, m.offset(), exc)
                    continue
                outcome = apply(view, cmd)
                for change in outcome.changes:
                    overlay[change.key] = change.item
                    records.append(_Record(owner.events_topic, encode_key(change.key), owner.event(change)))
                replies.append(_Record(t.replies, outcome.reply.id.encode(), outcome.reply.to_json(),
                                       partition=cmd.reply_to % owner.reply_partitions))
            records += [_Record(t.changelog, encode_key(key), item.to_json(), partition=self.partition)
                        for key, item in overlay.items()]
            publisher = self.publisher
            assert publisher is not None
            try:
                publisher.publish([*records, *replies],
                                  [TopicPartition(t.commands, self.partition, messages[-1].offset() + 1)],
                                  owner.group_metadata)
            except (KafkaException, TransactionHung) as exc:
                error = exc.args[0] if isinstance(exc, KafkaException) else None
                if error is not None and not error.fatal():
                    log.warning("partition %s: transaction failed (%s); applying the batch again", self.partition,
                                error)
                    publisher.abort()
                else:
                    log.warning("partition %s: %s; a new producer, the partition restored, the batch again",
                                self.partition, exc)
                    if error is not None:
                        publisher.replace()
                    self.store = owner.restore(self.partition)
                if owner.stop.is_set():  # not committed: the partition's next owner applies the batch
                    return
                time.sleep(0.05)
                continue
            self.store.update(overlay)
            owner.stats.add(len(messages), len(records) - len(overlay))
            return


@dataclass
class _Record:
    """One record of a state transaction."""

    topic: str
    key: bytes
    value: bytes
    headers: list | None = None
    partition: int = -1


def _drain(consumer: Consumer, timeout_s: float, limit: int = 500) -> list[Message]:
    """What is there: waits up to `timeout_s` for the first message only (`consume(n, t)` would wait for n)."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, timeout=0)]
