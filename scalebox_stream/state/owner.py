"""An owner process: applies the commands of its partitions in order, exactly once.

One thread polls the owners' group for commands and applies what has gathered, of all its partitions, in the
open Kafka transaction of the process's one transactional producer, and sends each command's reply at once. The
transaction stays open across batches and commits when the `CommitPolicy` says (every few tens of ms, as Kafka
Streams commits every `commit.interval.ms`): then a StateChanged event per change goes to `sbx.events`, the
changed items to the compacted changelog (the command's partition, one record per item) and the consumed
offsets with them. Only the replies wait in the open transaction, so the readers of the changelog and of
`sbx.events` (`read_committed`) are held back only while a commit is under way, not while it is open.

Callers read the replies before the commit (`read_uncommitted`), and an answer once read always stands:
`apply` is a pure function of the committed state and the commands in their partition's log order (no clock,
no random value, no owner id, nothing of batch boundaries in a reply or an item). A transaction that never
commits (the owner killed, fenced, or its commit failed) leaves the committed state and the committed offset
as they were; whoever applies those commands next (this owner again, or the partition's next owner after a
restore) applies the same commands in the same order to the same state, so it sends the same answers again.

Fencing follows KIP-447: the offsets go into the transaction with the consumer's group metadata (generation and
member), so a replaced owner's transaction is refused by the group coordinator and aborted as a whole. A newly
assigned partition first has its committed offset read as the group sees it once stable (`read_committed`
consumers ask for stable offsets: a pending transactional commit of the previous owner is first completed or
aborted), then its changelog read to its end, and only then are its commands applied. A zombie owner (one the
group replaced without its knowing) holds the committed state plus its own open transaction, which applies a
prefix of the same log, so its answers agree with the new owner's, and its commit is refused. An owner
restarted under the same id (`group.instance.id`, and the same transactional id) aborts its predecessor's open
transaction at once; another's is aborted by the broker after the short transaction timeout. Revoked
partitions are committed first (in the rebalance callback), lost ones aborted.
"""

from __future__ import annotations

import logging
import os
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
from scalebox_stream.state.commit import CommitPolicy
from scalebox_stream.state.machine import Change, apply
from scalebox_stream.state.model import Command, Item, Key, StateTopics, decode_key, encode_key

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 120.0
BATCH_MAX = 2000
TRANSACTION_TIMEOUT_MS = 10000
"""The broker aborts an owner's open transaction after this long: a transaction of an owner that crashed while
committing holds back the reads of the changelog and `sbx.events` (read_committed) until then, unless an owner of
the same id starts."""


def default_owner_id() -> str:
    """This host's first owner: a restarted owner with the same id takes over its group membership at once
    (two live owners need two ids)."""
    return f"{socket.gethostname()}.0"


@dataclass
class OwnerStats:
    """Counts since start; `batches`: transactions committed; `commit_s`: time spent committing them."""

    commands: int = 0
    changes: int = 0
    batches: int = 0
    commit_s: float = 0.0
    restored: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, commands: int, changes: int, commit_s: float = 0.0) -> None:
        with self.lock:
            self.commands += commands
            self.changes += changes
            self.batches += 1
            self.commit_s += commit_s

    def summary(self) -> str:
        """One line: commands, transactions, changes, mean commands per transaction and mean commit time."""
        per = self.commands / self.batches if self.batches else 0.0
        ms = 1000 * self.commit_s / self.batches if self.batches else 0.0
        return (f"applied {self.commands} command(s) in {self.batches} transaction(s); {self.changes} change(s); "
                f"{per:.1f} command(s) and {ms:.1f} ms per transaction")


class Owner:
    """Applies state commands for the partitions the group gives it, until `stop` is set."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, owner_id: str | None = None,
                 events_topic: str = EVENTS_TOPIC, stop: threading.Event | None = None,
                 on_ready: Callable[[], None] | None = None, static: bool = True,
                 commit_policy: CommitPolicy | None = None) -> None:
        self.bootstrap, self.topics = bootstrap, topics or StateTopics.from_env()
        self.owner_id = owner_id or default_owner_id()
        self.static = static
        """Static membership (the owner id as `group.instance.id`): a restarted owner takes its partitions back at
        once, but a stopped one keeps them until its session times out. Not static: it leaves the group when it
        stops, so the others take over at once (`scalebox run`'s owner)."""
        self.events_topic, self.stop = events_topic, stop or threading.Event()
        self.on_ready = on_ready
        self.stores: dict[int, dict[Key, Item]] = {}
        """The committed state of each partition served (restored and applied)."""
        self.unrestored: set[int] = set()
        """Partitions assigned but not restored yet; also all partitions after a producer was replaced."""
        self.batch: list[Message] = []
        """Commands taken but not applied yet."""
        self.applied: list[Message] = []
        """Commands applied in the open transaction (answered, not committed; applied again if it fails)."""
        self.pending: dict[int, dict[Key, Item]] = {}
        """The open transaction's changes, per partition (the committed state takes them when it commits)."""
        self.events: list[_Record] = []
        """The open transaction's StateChanged events (sent with the changelog when it commits)."""
        self.opened: float | None = None
        """When the open transaction began (monotonic); None: no transaction is open."""
        self.commit_policy = commit_policy or CommitPolicy.from_env()
        self.stats = OwnerStats()
        self.consumer: Consumer | None = None
        self.publisher: TransactionalPublisher | None = None
        self.reply_partitions = self.topics.reply_partitions

    @property
    def transactional_id(self) -> str:
        """One per owner process: the same for a restarted static owner (it fences its predecessor), unique for an
        ephemeral one (two of them may share an owner id)."""
        base = f"{self.topics.group}.{self.owner_id}"
        return base if self.static else f"{base}.{os.getpid()}.{threading.get_native_id()}"

    def run(self) -> OwnerStats:
        """Serve until stopped."""
        t = self.topics
        membership = {"group.instance.id": f"{t.group}.{self.owner_id}"} if self.static else {}
        consumer = self.consumer = Consumer(consumer_config(self.bootstrap, t.group, **{
            **membership, "session.timeout.ms": 10000, "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 10}))
        try:
            replies = consumer.list_topics(t.replies, timeout=30).topics[t.replies]
            if replies.error is not None or not replies.partitions:
                raise RuntimeError(f"no replies topic {t.replies}: {replies.error}")
            self.reply_partitions = len(replies.partitions)
            self.publisher = TransactionalPublisher(
                self.bootstrap, self.transactional_id, timeout_s=10.0, stop=self.stop,
                producer_extra={"transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
            consumer.subscribe([t.commands], on_assign=self._assigned, on_revoke=self._revoked,
                               on_lost=self._lost)
            self._serve(consumer)
        finally:
            consumer.close()
        return self.stats

    def _serve(self, consumer: Consumer) -> None:
        ready = False
        while not self.stop.is_set():
            messages = _drain(consumer, 0.01 if self.batch else self.commit_policy.wait_s(self._open_s()), BATCH_MAX)
            for m in messages:
                error = m.error()
                if error is None:
                    if m.partition() in self.stores or m.partition() in self.unrestored:
                        self.batch.append(m)
                elif error.fatal():
                    raise KafkaException(error)
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
            if self.unrestored:
                try:
                    self._restore_assigned(consumer)
                except (KafkaException, RuntimeError) as exc:  # a broker restarting: try again after the next poll
                    log.warning("restoring partitions %s failed (%s); trying again", sorted(self.unrestored), exc)
                    self.stop.wait(0.5)
                    continue
            if not ready and self.stores and not self.unrestored:
                ready = True
                log.info("owner %s serving partitions %s (%s items restored)", self.owner_id, sorted(self.stores),
                         [self.stats.restored.get(p) for p in sorted(self.stores)])
                if self.on_ready:
                    self.on_ready()
            if self.batch:
                self._apply()
            if self.commit_policy.due(self._open_s() or 0.0, len(self.applied)):
                self._commit(consumer.consumer_group_metadata())
        if self.applied:  # stopping: what was answered is committed before the partitions go
            self._commit_open(consumer.consumer_group_metadata())

    def _open_s(self) -> float | None:
        """How long the open transaction has been open (None: none is)."""
        return None if self.opened is None else time.monotonic() - self.opened

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """New partitions are restored before their commands are applied (by the polling loop, after the poll)."""
        self.unrestored.update(tp.partition for tp in partitions)
        log.info("owner %s assigned partitions %s", self.owner_id, [tp.partition for tp in partitions])

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit the open transaction while the partitions are still this owner's (the member's generation is
        still valid), then forget them and their uncommitted commands (their next owner reads them again from
        the committed offset)."""
        if self.applied:
            self._commit_open(consumer.consumer_group_metadata())
        self._forget(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away (this member was dropped from the group): the open transaction cannot commit any
        more (it would be fenced), so it is aborted; the other partitions' commands are applied again."""
        if self.opened is not None and self.publisher is not None:
            self.publisher.abort()
            self._rewind()
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        for p in gone:
            self.stores.pop(p, None)
            self.pending.pop(p, None)
        self.unrestored -= gone
        self.batch = [m for m in self.batch if m.partition() not in gone]
        log.info("owner %s gave up partitions %s", self.owner_id, sorted(gone))

    def _restore_assigned(self, consumer: Consumer) -> None:
        """Restore the unrestored partitions once their committed offsets are stable (KIP-447): the previous
        owner's transaction with offsets of a partition has then ended, so its changelog is final up to here.
        Commands below the committed offset (a commit that did happen though it failed to say so) are dropped:
        the restored state holds them."""
        partitions = sorted(self.unrestored)
        committed = consumer.committed([TopicPartition(self.topics.commands, p) for p in partitions],
                                       timeout=RESTORE_TIMEOUT_S)
        done = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        self.batch = [m for m in self.batch if m.offset() >= done.get(m.partition(), -1)]
        for p, items in self.restore(partitions).items():
            self.stores[p] = items
        self.unrestored.clear()

    def restore(self, partitions: list[int]) -> dict[int, dict[Key, Item]]:
        """Read changelog partitions to their ends; the latest value of each key wins."""
        stores: dict[int, dict[Key, Item]] = {p: {} for p in partitions}
        if not partitions:
            return stores
        restorer = Consumer(consumer_config(self.bootstrap, f"{self.topics.group}.restore", **{
            "enable.partition.eof": True, "fetch.wait.max.ms": 10}))
        restorer.assign([TopicPartition(self.topics.changelog, p, OFFSET_BEGINNING) for p in partitions])
        deadline, open_ = time.monotonic() + RESTORE_TIMEOUT_S, set(partitions)
        try:
            while open_:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"changelog partitions {sorted(open_)} not read to their end in "
                                       f"{RESTORE_TIMEOUT_S:.0f} s")
                for m in restorer.consume(1000, timeout=0.2):
                    p = m.partition()
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            if p in open_:
                                open_.discard(p)
                                self.stats.restored[p] = len(stores[p])
                            continue
                        raise KafkaException(m.error())
                    if p not in open_:
                        continue  # past the end this restore saw (nothing is written there: not assigned yet)
                    key, items = decode_key(m.key()), stores[p]
                    if m.value() is None:
                        items.pop(key, None)
                    else:
                        items[key] = Item.from_json(m.value())
        finally:
            restorer.close()
        return stores

    def _apply(self) -> None:
        """Apply the gathered commands in the open transaction (opened first if none is) and send their replies
        at once: a caller reads its reply before the commit. The changes stay in `pending` and the events in
        `events` (the committed state is not touched) until the transaction commits."""
        publisher = self.publisher
        assert publisher is not None
        t = self.topics
        events: list[_Record] = []
        replies: list[_Record] = []
        for m in self.batch:
            p = m.partition()
            try:
                cmd = Command.from_json(m.value())
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("dropping a malformed command at %s/%s: %s", p, m.offset(), exc)
                continue
            overlay = self.pending.setdefault(p, {})
            outcome = apply(ChainMap(overlay, self.stores[p]), cmd)
            for change in outcome.changes:
                overlay[change.key] = change.item
                events.append(_Record(self.events_topic, encode_key(change.key), self.event(change)))
            replies.append(_Record(t.replies, outcome.reply.id.encode(), outcome.reply.to_json(),
                                   partition=cmd.reply_to % self.reply_partitions))
        try:
            if self.opened is None:
                publisher.begin()
                self.opened = time.monotonic()
            publisher.send(replies)
        except KafkaException as exc:
            self._failed(exc)
            return
        self.applied += self.batch
        self.events += events
        self.batch = []

    def _commit(self, group_metadata: object) -> None:
        """Apply what has gathered, then commit the open transaction: the events, the changed items to the
        changelog (one record per item, its latest value) and the consumed offsets. A failed transaction is
        aborted and its commands kept to be applied again from the committed state (with what the next poll adds,
        without what it revokes); after a fatal error or a stuck call the producer is replaced and every partition
        restored first (a commit that did happen is then in the changelog and the committed offsets)."""
        if self.batch:
            self._apply()
        if self.applied:
            self._commit_open(group_metadata)

    def _commit_open(self, group_metadata: object) -> None:
        t, publisher = self.topics, self.publisher
        assert publisher is not None
        offsets: dict[int, int] = {}
        for m in self.applied:
            offsets[m.partition()] = m.offset() + 1
        changelog = [_Record(t.changelog, encode_key(key), item.to_json(), partition=p)
                     for p, overlay in self.pending.items() for key, item in overlay.items()]
        started = time.perf_counter()
        try:
            publisher.send([*self.events, *changelog])
            publisher.commit([TopicPartition(t.commands, p, offset) for p, offset in sorted(offsets.items())],
                             group_metadata)
        except (KafkaException, TransactionHung) as exc:
            self._failed(exc)
            return
        for p, overlay in self.pending.items():
            self.stores[p].update(overlay)
        self.stats.add(len(self.applied), len(self.events), time.perf_counter() - started)
        self.applied, self.pending, self.events, self.opened = [], {}, [], None

    def _failed(self, exc: Exception) -> None:
        """The open transaction failed: abort it (or replace the producer and restore every partition), and apply
        its commands again."""
        publisher = self.publisher
        assert publisher is not None
        error = exc.args[0] if isinstance(exc, KafkaException) else None
        if error is not None and not error.fatal():
            log.warning("transaction failed (%s); applying its commands again", error)
            publisher.abort()
        else:
            log.warning("%s; a new producer, the partitions restored, the commands again", exc)
            if error is not None:
                publisher.replace()
            self.unrestored.update(self.stores)
        self._rewind()
        if not self.stop.is_set():
            time.sleep(0.05)

    def _rewind(self) -> None:
        """Forget the open transaction: its commands go back to the front of the batch, in order."""
        self.batch = [*self.applied, *self.batch]
        self.applied, self.pending, self.events, self.opened = [], {}, [], None

    def event(self, change: Change) -> bytes:
        """The StateChanged event of a change."""
        kind, app, name = change.key
        payload = {"kind": kind, "name": name, "value": str(change.item.value), "op": change.op,
                   "old_value": None if change.old is None else str(change.old), "request_id": change.request_id,
                   "version": change.item.version}
        return _CODEC.encode(Event("StateChanged", app, payload, producer=f"state-owner/{self.owner_id}"))


_CODEC = EventCodec()


@dataclass
class _Record:
    """One record of a state transaction."""

    topic: str
    key: bytes
    value: bytes
    headers: list | None = None
    partition: int = -1


def _drain(consumer: Consumer, timeout_s: float, limit: int = BATCH_MAX) -> list[Message]:
    """What is there: waits up to `timeout_s` for the first message only (`consume(n, t)` would wait for n)."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, timeout=0)]
