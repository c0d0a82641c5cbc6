"""An owner process: applies the commands of its partitions in order, exactly once.

One consumer of the owners' group reads the commands topic; for each batch one Kafka transaction carries the
changed items to the compacted changelog (same partition as the command), the replies, a StateChanged event per
change on `sbx.events`, and the consumed offsets. A partition assigned to this owner is first restored from its
changelog partition: the committed offsets are fetched first (with read_committed they are stable, so any
transaction of a previous owner that carried offsets has ended), then the changelog is read to its last stable
offset. A previous owner's transaction still open then has no offsets and is fenced by the group generation:
it can only abort.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.state.machine import Change, apply
from scalebox_stream.state.model import Command, Item, Key, StateTopics, decode_key, encode_key

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 120.0


def default_owner_id() -> str:
    """This host's first owner: a restarted owner with the same id takes over its group membership and fences
    its predecessor's transaction at once (two live owners need two ids)."""
    return f"{socket.gethostname()}.0"


@dataclass
class OwnerStats:
    """Counts since start."""

    commands: int = 0
    changes: int = 0
    batches: int = 0
    restored: dict[int, int] = field(default_factory=dict)


class Owner:
    """Applies state commands for the partitions the group gives it, until `stop` is set."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, owner_id: str | None = None,
                 events_topic: str = EVENTS_TOPIC, stop: threading.Event | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.bootstrap, self.topics = bootstrap, topics or StateTopics.from_env()
        self.owner_id = owner_id or default_owner_id()
        self.events_topic, self.stop = events_topic, stop or threading.Event()
        self.on_ready = on_ready
        self.stores: dict[int, dict[Key, Item]] = {}
        self.stats = OwnerStats()
        self.codec = EventCodec()
        self._consumer: Consumer | None = None
        self._restorer: Consumer | None = None

    def run(self) -> OwnerStats:
        """Serve until stopped; raises KafkaException on a fatal producer error (fenced by a newer owner)."""
        t = self.topics
        self._restorer = Consumer(consumer_config(self.bootstrap, f"{t.group}.restore", **{
            "enable.partition.eof": True, "fetch.wait.max.ms": 10}))
        producer = Producer(producer_config(self.bootstrap, transactional_id=f"{t.group}.{self.owner_id}", **{
            "linger.ms": 0, "retry.backoff.ms": 1, "retry.backoff.max.ms": 100, "transaction.timeout.ms": 10000,
            "compression.type": "none"}))
        producer.init_transactions(60)
        consumer = self._consumer = Consumer(consumer_config(self.bootstrap, t.group, **{
            "group.instance.id": f"{t.group}.{self.owner_id}", "session.timeout.ms": 10000,
            "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 10}))
        consumer.subscribe([t.commands], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        ready = False
        try:
            while not self.stop.is_set():
                messages = consumer.consume(500, timeout=0.1)
                if not ready and consumer.assignment():
                    ready = True
                    if self.on_ready:
                        self.on_ready()
                commands = [m for m in messages if self._usable(m)]
                if commands:
                    self._batch(producer, consumer, commands)
        finally:
            consumer.close()
            self._restorer.close()
            producer.flush(5)
        return self.stats

    @staticmethod
    def _usable(m: Message) -> bool:
        if m.error() is None:
            return True
        if m.error().code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", m.error())
        return False

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore each new partition before any of its commands is applied."""
        consumer.committed(partitions, timeout=RESTORE_TIMEOUT_S)  # waits for stable offsets (read_committed)
        for tp in partitions:
            self.stores[tp.partition] = self._restore(tp.partition)
            self.stats.restored[tp.partition] = len(self.stores[tp.partition])
        log.info("owner %s assigned partitions %s (%s items)", self.owner_id, [tp.partition for tp in partitions],
                 [len(self.stores[tp.partition]) for tp in partitions])

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.stores.pop(tp.partition, None)
        log.info("owner %s gave up partitions %s", self.owner_id, [tp.partition for tp in partitions])

    def _restore(self, partition: int) -> dict[Key, Item]:
        """Read one changelog partition to its last stable offset; the latest value of each key wins."""
        assert self._restorer is not None
        items: dict[Key, Item] = {}
        self._restorer.assign([TopicPartition(self.topics.changelog, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        try:
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"changelog partition {partition} not read to its end in "
                                       f"{RESTORE_TIMEOUT_S:.0f} s")
                for m in self._restorer.consume(1000, timeout=0.5):
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            return items
                        raise KafkaException(m.error())
                    key = decode_key(m.key())
                    if m.value() is None:
                        items.pop(key, None)
                    else:
                        items[key] = Item.from_json(m.value())
        finally:
            self._restorer.unassign()

    def _batch(self, producer: Producer, consumer: Consumer, messages: list[Message]) -> None:
        """Apply a batch of commands and commit its effects in one transaction; on failure the batch is read
        again (nothing of it was committed)."""
        overlays: dict[int, dict[Key, Item]] = {}
        replies, changes, first, last = [], [], {}, {}
        for m in messages:
            p = m.partition()
            first.setdefault(p, m.offset())
            last[p] = m.offset()
            if p not in self.stores:  # revoked meanwhile: its new owner applies it
                continue
            try:
                cmd = Command.from_json(m.value())
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("dropping a malformed command at %s/%s: %s", p, m.offset(), exc)
                continue
            overlay = overlays.setdefault(p, {})
            outcome = apply(ChainMap(overlay, self.stores[p]), cmd)
            for change in outcome.changes:
                overlay[change.key] = change.item
                changes.append(change)
            replies.append((cmd.reply_to % self.topics.reply_partitions, outcome.reply))
        try:
            producer.begin_transaction()
            for p, overlay in overlays.items():
                for key, item in overlay.items():
                    producer.produce(self.topics.changelog, key=encode_key(key), value=item.to_json(), partition=p)
            for change in changes:
                producer.produce(self.events_topic, key=encode_key(change.key), value=self._event(change))
            for partition, reply in replies:
                producer.produce(self.topics.replies, key=reply.id.encode(), value=reply.to_json(),
                                 partition=partition)
            producer.send_offsets_to_transaction(
                [TopicPartition(self.topics.commands, p, o + 1) for p, o in last.items()],
                consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or not error.txn_requires_abort() and not error.retriable():
                raise
            log.warning("state transaction failed (%s); aborting and reading the batch again", error)
            producer.abort_transaction(30)
            for p, o in first.items():
                if p in self.stores:
                    consumer.seek(TopicPartition(self.topics.commands, p, o))
            return
        for p, overlay in overlays.items():
            if p in self.stores:
                self.stores[p].update(overlay)
        self.stats.batches += 1
        self.stats.commands += len(messages)
        self.stats.changes += len(changes)

    def _event(self, change: Change) -> bytes:
        kind, app, name = change.key
        payload = {"kind": kind, "name": name, "value": str(change.item.value), "op": change.op,
                   "old_value": None if change.old is None else str(change.old), "request_id": change.request_id,
                   "version": change.item.version}
        return self.codec.encode(Event("StateChanged", app, payload, producer=f"state-owner/{self.owner_id}"))
