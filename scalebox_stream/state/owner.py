"""An owner process: applies the commands of its partitions in order, exactly once.

One thread polls the owners' group for commands, applies what has gathered (of all its partitions) and sends the
replies at once, together, on a producer of its own (idempotent, not transactional). What it applied is committed
when the `CommitPolicy` says (every few tens of ms, as Kafka Streams commits every `commit.interval.ms`), in one
Kafka transaction of the process's one transactional producer, on a committer thread: a StateChanged event per
change on `sbx.events`, the changed items on the compacted changelog (the command's partition, one record per
item; a tombstone for a deleted one) and the consumed offsets. Commands go on being applied and answered while a
commit is under way, on top of what it commits; the committed state takes a transaction's changes once it has
committed.

Callers read their replies before the commit, and an answer once read always stands: `apply` is a pure function
of the committed state and the commands in their partition's log order (no clock, no random value, no owner id,
nothing of batch boundaries in a reply or an item). A commit that fails (the owner killed, fenced, or the
transaction refused) leaves the committed state and the committed offset as they were; whoever applies those
commands next (this owner again, or the partition's next owner after a restore) applies the same commands in
the same order to the same state, so it sends the same answers again.

Fencing follows KIP-447: the offsets go into the transaction with the consumer's group metadata (generation and
member), so a replaced owner's transaction is refused by the group coordinator and aborted as a whole. A newly
assigned partition first has its committed offset read as the group sees it once stable (`read_committed`
consumers ask for stable offsets: a pending transactional commit of the previous owner is first completed or
aborted), then its changelog read to its end, and only then are its commands applied. A zombie owner (one the
group replaced without its knowing) holds the committed state plus what it applied since, a prefix of the same
log, so its answers agree with the new owner's, and its commit is refused. An owner restarted under the same id
(`group.instance.id`, and the same transactional id) aborts its predecessor's open transaction at once;
another's is aborted by the broker after the short transaction timeout. What was applied (not yet being
committed) for revoked or lost partitions is dropped: their next owner applies it again, with the same answers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.kafka.transactions import TransactionalPublisher, TransactionHung
from scalebox_stream.state.commit import CommitPolicy
from scalebox_stream.state.machine import Change, apply
from scalebox_stream.state.model import Command, Item, Key, StateTopics, decode_key, encode_key

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 120.0
BATCH_MAX = 2000
STOP_WAIT_S = 5.0
"""A stopping owner waits this long for its last commit (and the replies' delivery): a cluster that is gone must
not hold it."""
REPLY_LINGER_MS = 0
"""The replies' producer sends each reply at once, and the owner does not wait for the broker to have them: it
goes on to the next batch while they travel (`Owner._apply`). librdkafka puts one partition in a produce request,
so the replies to different clients take a request each whatever the linger; a batch's replies to one partition
are produced back to back and mostly share one all the same."""
COMMAND_FETCH = {"queued.min.messages": 1, "fetch.queue.backoff.ms": 1}
"""The owner's consumer fetches commands again only once the owner took what it fetched (at most 1 ms later):
while the owner applies a batch and sends its replies, the commands that come stay on the broker and are fetched
together, in one fetch request rather than one each. The queue the threshold counts is the consumer's, shared by
all its partitions."""
TRANSACTION_TIMEOUT_MS = 10000
"""The broker aborts an owner's open transaction after this long: a transaction of an owner that crashed while
committing holds back the reads of the changelog and `sbx.events` (read_committed) until then, unless an owner of
the same id starts. Replies are not held back (they are not in the transaction)."""


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
        self.open = _Txn()
        """The commands applied since the last commit began (answered, not committed)."""
        self.committing: _Txn | None = None
        """The commands of the commit under way (on the committer thread), if one is."""
        self._commit_call: Future[None] | None = None
        self.replier: Any = None
        """The replies' producer: idempotent, not transactional (a reply goes out as soon as it is made)."""
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
            **membership, "session.timeout.ms": 10000, "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 10,
            **COMMAND_FETCH}))
        try:
            replies = consumer.list_topics(t.replies, timeout=30).topics[t.replies]
            if replies.error is not None or not replies.partitions:
                raise RuntimeError(f"no replies topic {t.replies}: {replies.error}")
            self.reply_partitions = len(replies.partitions)
            self.publisher = TransactionalPublisher(
                self.bootstrap, self.transactional_id, timeout_s=10.0, stop=self.stop,
                producer_extra={"transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
            self.replier = Producer(producer_config(self.bootstrap, **{
                "linger.ms": REPLY_LINGER_MS, "compression.type": "none", "retry.backoff.ms": 10}))
            consumer.subscribe([t.commands], on_assign=self._assigned, on_revoke=self._revoked,
                               on_lost=self._revoked)
            self._serve(consumer)
        finally:
            consumer.close()
            if self.replier is not None:
                self.replier.flush(STOP_WAIT_S)
        return self.stats

    def _serve(self, consumer: Consumer) -> None:
        ready = False
        while not self.stop.is_set():
            wait_s = 0.01 if self.batch else self.commit_policy.wait_s(self.open.open_s())
            messages = _drain(consumer, min(wait_s, 0.005) if self.committing else wait_s, BATCH_MAX)
            for m in messages:
                error = m.error()
                if error is None:
                    if m.partition() in self.stores or m.partition() in self.unrestored:
                        self.batch.append(m)
                elif error.fatal():
                    raise KafkaException(error)
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
            self._settle()
            if self.unrestored and self.committing is None:
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
            if self.batch and not self.unrestored:
                self._apply()
            if self.committing is None and self.commit_policy.due(self.open.open_s() or 0.0,
                                                                  len(self.open.applied)):
                self._begin_commit(consumer.consumer_group_metadata())
            self.replier.poll(0)
        # stopping: what was answered is committed before the partitions go, if the cluster lets it in time
        if self._settle(wait=True, timeout_s=STOP_WAIT_S) and self.open.applied:
            self._begin_commit(consumer.consumer_group_metadata())
            self._settle(wait=True, timeout_s=STOP_WAIT_S)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """New partitions are restored before their commands are applied (by the polling loop, after the poll)."""
        self.unrestored.update(tp.partition for tp in partitions)
        log.info("owner %s assigned partitions %s", self.owner_id, [tp.partition for tp in partitions])

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions revoked or lost: what was applied since the commit under way began is dropped (their next
        owner applies it again, with the same answers; the other partitions' commands are applied again here).
        Nothing waits in the rebalance callback: a commit under way ends by itself (refused if the group moved on,
        and then applied again too)."""
        self.batch = [*self.open.applied, *self.batch]
        self.open = _Txn()
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        for p in gone:
            self.stores.pop(p, None)
        self.unrestored -= gone
        self.batch = [m for m in self.batch if m.partition() not in gone]
        log.info("owner %s gave up partitions %s", self.owner_id, sorted(gone))

    def _restore_assigned(self, consumer: Consumer) -> None:
        """Restore the unrestored partitions once their committed offsets are stable (KIP-447): the previous
        owner's transaction with offsets of a partition has then ended, so its changelog is final up to here. The
        consumer is moved to those offsets and what it had fetched of them is dropped: the position it took when
        assigned may be older (a commit of this owner still under way then) and the state is as of these."""
        partitions = sorted(self.unrestored)
        committed = consumer.committed([TopicPartition(self.topics.commands, p) for p in partitions],
                                       timeout=RESTORE_TIMEOUT_S)
        for tp in committed:
            consumer.seek(TopicPartition(self.topics.commands, tp.partition,
                                         tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self.batch = [m for m in self.batch if m.partition() not in self.unrestored]
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
        """Apply the gathered commands on top of what is applied but not committed, and send their replies at once:
        a caller reads its reply before the commit. The changes and events wait in `open` for the next commit
        (the committed state is not touched until then).

        The replies of the batch are produced first, together, and the owner does not wait for their delivery
        (`REPLY_LINGER_MS`); then it encodes their StateChanged events (they go out only with the commit)."""
        t, txn = self.topics, self.open
        changes: list[Change] = []
        replies: list[_Record] = []
        for m in self.batch:
            p = m.partition()
            try:
                cmd = Command.from_json(m.value())
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("dropping a malformed command at %s/%s: %s", p, m.offset(), exc)
                continue
            overlay = txn.pending.setdefault(p, {})
            committing = self.committing.pending.get(p, {}) if self.committing is not None else {}
            outcome = apply(ChainMap(overlay, committing, self.stores[p]), cmd)
            for change in outcome.changes:
                overlay[change.key] = change.item
            changes += outcome.changes
            replies.append(_Record(t.replies, outcome.reply.id.encode(), outcome.reply.to_json(),
                                   partition=cmd.reply_to % self.reply_partitions))
        for record in replies:
            self._reply(record)
        txn.events += [_Record(self.events_topic, encode_key(c.key), self.event(c)) for c in changes if c.event]
        if txn.opened is None:
            txn.opened = time.monotonic()
        txn.applied += self.batch
        self.batch = []

    def _reply(self, record: _Record) -> None:
        """Send a reply (a full local queue is drained first; a reply that cannot be sent is left to the client's
        resend, which is answered the same)."""
        for _ in range(200):
            try:
                self.replier.produce(record.topic, key=record.key, value=record.value, partition=record.partition)
                return
            except BufferError:
                self.replier.poll(0.05)
            except KafkaException as exc:
                log.warning("reply %s not sent: %s", record.key, exc)
                return
        log.warning("reply %s not sent: the producer's queue stayed full", record.key)

    def _commit(self, group_metadata: object) -> None:
        """Apply what has gathered, then commit everything applied and wait for it (on stopping, and in tests)."""
        if self.batch:
            self._apply()
        self._settle(wait=True)
        if self.open.applied:
            self._begin_commit(group_metadata)
            self._settle(wait=True)

    def _begin_commit(self, group_metadata: object) -> None:
        """Commit what was applied since the last commit, in one transaction on the committer thread: the events,
        the changed items to the changelog (one record per item, its latest value) and the consumed offsets.
        Commands go on being applied and answered meanwhile, on top of it."""
        t, publisher, txn = self.topics, self.publisher, self.open
        assert publisher is not None and self.committing is None
        offsets: dict[int, int] = {}
        for m in txn.applied:
            offsets[m.partition()] = m.offset() + 1
        changelog = [_Record(t.changelog, encode_key(key), None if item is None else item.to_json(), partition=p)
                     for p, overlay in txn.pending.items() for key, item in overlay.items()]
        self.committing, self.open = txn, _Txn()
        txn.started = time.perf_counter()
        call: Future[None] = Future()
        records = [*txn.events, *changelog]
        positions = [TopicPartition(t.commands, p, offset) for p, offset in sorted(offsets.items())]

        def commit() -> None:
            try:
                publisher.publish(records, positions, group_metadata)
                call.set_result(None)
            except BaseException as exc:  # handed to the owner's thread
                call.set_exception(exc)

        self._commit_call = call
        threading.Thread(target=commit, name="state-commit", daemon=True).start()  # a stopping owner leaves it

    def _settle(self, wait: bool = False, timeout_s: float | None = None) -> bool:
        """Take the outcome of the commit under way once it is done (`wait`: wait for it, up to `timeout_s`):
        committed, the state takes its changes; failed, everything applied since the last commit is applied again
        (see `_failed`). Whether no commit is under way any more."""
        call, txn = self._commit_call, self.committing
        if call is None or txn is None:
            return True
        if not wait and not call.done():
            return False
        try:
            call.result(timeout_s)
        except FutureTimeout:
            log.warning("the commit under way did not end in %.0f s", timeout_s)
            return False
        except (KafkaException, TransactionHung) as exc:
            self._failed(exc)
            return True
        for p, overlay in txn.pending.items():
            if p in self.stores:
                _merge(self.stores[p], overlay)
        self.stats.add(len(txn.applied), len(txn.events), time.perf_counter() - txn.started)
        self.committing, self._commit_call = None, None
        return True

    def _failed(self, exc: Exception) -> None:
        """A commit failed: abort it (or replace the producer and restore every partition), and apply its commands
        and those applied since again, from the committed state."""
        publisher = self.publisher
        assert publisher is not None
        error = exc.args[0] if isinstance(exc, KafkaException) else None
        if self.stop.is_set():  # the next owner applies them again; its producer aborts this one's transaction
            log.warning("transaction failed (%s) while stopping", exc)
        elif error is not None and not error.fatal():
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
        """Forget what was applied and not committed: its commands go back to the front of the batch, in order."""
        earlier = self.committing.applied if self.committing is not None else []
        self.batch = [m for m in (*earlier, *self.open.applied, *self.batch)
                      if m.partition() in self.stores or m.partition() in self.unrestored]
        self.open, self.committing, self._commit_call = _Txn(), None, None

    def event(self, change: Change) -> bytes:
        """The StateChanged event of a change."""
        kind, app, name = change.key
        payload = {"kind": kind, "name": name, "value": "" if change.item is None else str(change.item.value),
                   "op": change.op, "old_value": None if change.old is None else str(change.old),
                   "request_id": change.request_id, "version": change.version}
        return _CODEC.encode(Event("StateChanged", app, payload, producer=f"state-owner/{self.owner_id}"))


_CODEC = EventCodec()


@dataclass
class _Record:
    """One record of a state transaction."""

    topic: str
    key: bytes
    value: bytes | None
    """None: a tombstone (a deleted item on the changelog)."""
    headers: list | None = None
    partition: int = -1


@dataclass
class _Txn:
    """Commands applied since a commit began: their changes per partition and their StateChanged events."""

    applied: list[Message] = field(default_factory=list)
    pending: dict[int, dict[Key, Item | None]] = field(default_factory=dict)
    """The items changed per partition (None: deleted)."""
    events: list[_Record] = field(default_factory=list)
    opened: float | None = None
    """When the first of them was applied (monotonic)."""
    started: float = 0.0
    """When its commit began (perf_counter)."""

    def open_s(self) -> float | None:
        """How long ago the first was applied (None: none was)."""
        return None if self.opened is None else time.monotonic() - self.opened


def _merge(store: dict[Key, Item], changes: dict[Key, Item | None]) -> None:
    """Take committed changes into a partition's state: a None is a deleted item."""
    for key, item in changes.items():
        if item is None:
            store.pop(key, None)
        else:
            store[key] = item


def _drain(consumer: Consumer, timeout_s: float, limit: int = BATCH_MAX) -> list[Message]:
    """What is there: waits up to `timeout_s` for the first message only (`consume(n, t)` would wait for n)."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, timeout=0)]
