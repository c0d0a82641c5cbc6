"""The owner's batch over a fake Kafka edge: replies go out as commands are applied, before the commit; what was
applied commits in one transaction with each partition's offset; a failed transaction's commands are applied
again from the committed state, with the same answers; a revoked partition's unapplied commands are dropped (its
next owner reads them again)."""

from __future__ import annotations

import json
import threading

from confluent_kafka import KafkaError, KafkaException
from fakes.kafka import FakeMessage

from scalebox_stream.state.model import SEMAPHORE, Command, Item, StateTopics, partition_of
from scalebox_stream.state.owner import Owner

TOPICS = StateTopics("sbx.unit.state")


def command_at(partition: int, offset: int, cmd: Command) -> FakeMessage:
    """A consumed command at `partition`/`offset`."""
    return FakeMessage("commands", partition, offset, cmd.to_json())


class FakePublisher:
    """Records each committed transaction; fails the next `fail` ones with a retriable (not fatal) error."""

    def __init__(self, fail: int = 0) -> None:
        self.committed: list[tuple[list, list]] = []
        self.fail, self.aborts = fail, 0

    def publish(self, records: list, offsets: list, group_metadata: object) -> None:
        if self.fail:
            self.fail -= 1
            raise KafkaException(KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "busy", retriable=True))
        self.committed.append((list(records), [(tp.partition, tp.offset) for tp in offsets]))

    def abort(self) -> None:
        self.aborts += 1


class FakeReplier:
    """The replies' producer: what was sent, in order; `flushes`: how many replies had been sent at each flush."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.flushes: list[int] = []

    def produce(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        assert topic == TOPICS.replies
        self.sent.append(json.loads(value))

    def flush(self, timeout: float = -1) -> int:
        self.flushes.append(len(self.sent))
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


def owner(publisher: FakePublisher) -> Owner:
    o = Owner("unused:9092", TOPICS, "unit", stop=threading.Event())
    o.publisher = publisher  # type: ignore[assignment]
    o.replier = FakeReplier()
    o.stores = {p: {} for p in range(TOPICS.partitions)}
    return o


def add(name: str, n: int, rid: str) -> tuple[int, Command]:
    return partition_of("a", name, TOPICS.partitions), Command(rid, "add", SEMAPHORE, "a", name, reply_to=0, n=n,
                                                               auto_create=True)


def names_on_two_partitions() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(100):
        seen.setdefault(partition_of("a", f"s{i}", TOPICS.partitions), f"s{i}")
        if len(seen) == 2:
            return tuple(seen.values())  # type: ignore[return-value]
    raise AssertionError


def test_all_partitions_commit_in_one_transaction_with_their_offsets() -> None:
    publisher = FakePublisher()
    o = owner(publisher)
    first, second = names_on_two_partitions()
    (p1, c1), (p1b, c2), (p2, c3) = add(first, 2, "r1"), add(first, 3, "r2"), add(second, 5, "r3")
    o.batch = [command_at(p1, 10, c1), command_at(p1b, 11, c2), command_at(p2, 40, c3)]
    o._commit(None)
    assert len(publisher.committed) == 1 and o.batch == []
    records, offsets = publisher.committed[0]
    assert sorted(offsets) == sorted([(p1, 12), (p2, 41)])
    replies = o.replier.sent
    assert [(r["id"], r["value"]) for r in replies] == [("r1", 2), ("r2", 5), ("r3", 5)]
    changelog = {(r.partition, json.loads(r.key)[2]): Item.from_json(r.value).value for r in records
                 if r.topic == TOPICS.changelog}
    assert changelog == {(p1, first): 5, (p2, second): 5}, "one changelog record per item, its latest value"
    assert o.stores[p1][(SEMAPHORE, "a", first)].value == 5
    assert o.stats.commands == 3 and o.stats.batches == 1


def test_a_batch_s_replies_are_sent_as_applied_and_the_owner_does_not_wait_for_them() -> None:
    o = owner(FakePublisher())
    first, second = names_on_two_partitions()
    (p1, c1), (p2, c2), (p1b, c3) = add(first, 1, "r1"), add(second, 1, "r2"), add(first, 1, "r3")
    o.batch = [command_at(p1, 0, c1), command_at(p2, 0, c2), command_at(p1b, 1, c3)]
    o._apply()
    assert [r["id"] for r in o.replier.sent] == ["r1", "r2", "r3"], "the batch's replies, in order"
    assert o.replier.flushes == [], "no flush: the owner goes on while they travel"
    o._apply()
    assert len(o.replier.sent) == 3 and o.replier.flushes == [], "an empty batch sends and flushes nothing"


def test_a_failed_transaction_keeps_the_batch_and_applies_it_again_from_the_committed_state() -> None:
    publisher = FakePublisher(fail=1)
    o = owner(publisher)
    p, cmd = add("s", 4, "r1")
    o.batch = [command_at(p, 0, cmd)]
    o._commit(None)
    assert publisher.aborts == 1 and publisher.committed == [] and len(o.batch) == 1
    assert (SEMAPHORE, "a", "s") not in o.stores[p], "nothing of the failed transaction is in the state"
    o.replier.sent.clear()
    o._commit(None)
    replies = o.replier.sent
    assert [(r["id"], r["value"]) for r in replies] == [("r1", 4)], "applied once, not twice"
    assert o.stores[p][(SEMAPHORE, "a", "s")].value == 4


def test_a_revoked_partition_drops_its_uncommitted_commands_and_state() -> None:
    o = owner(FakePublisher())
    first, second = names_on_two_partitions()
    (p1, c1), (p2, c2) = add(first, 1, "r1"), add(second, 1, "r2")
    o.batch = [command_at(p1, 0, c1), command_at(p2, 0, c2)]
    o._revoked(None, [type("TP", (), {"partition": p1})()])  # type: ignore[arg-type]
    assert [m.partition() for m in o.batch] == [p2] and p1 not in o.stores


def replies_of(o: Owner) -> list[tuple[str, int, int]]:
    return [(r["id"], r["code"], r["value"]) for r in o.replier.sent]


def test_replies_go_out_before_the_commit_and_one_transaction_spans_batches() -> None:
    publisher = FakePublisher()
    o = owner(publisher)
    (p, c1), (_, c2) = add("s", 2, "r1"), add("s", 3, "r2")
    o.batch = [command_at(p, 10, c1)]
    o._apply()
    assert replies_of(o) == [("r1", 0, 2)] and publisher.committed == [], "answered before the commit"
    assert (SEMAPHORE, "a", "s") not in o.stores[p], "the committed state waits for the commit"
    o.batch = [command_at(p, 11, c2)]
    o._apply()
    assert replies_of(o) == [("r1", 0, 2), ("r2", 0, 5)], "the second batch on top of the first"
    o._commit(None)
    records, offsets = publisher.committed[0]
    assert len(publisher.committed) == 1 and offsets == [(p, 12)]
    assert [Item.from_json(r.value).value for r in records if r.topic == TOPICS.changelog] == [5]
    assert sum(r.topic == "sbx.events" for r in records) == 2, "one StateChanged event per change"
    assert o.stores[p][(SEMAPHORE, "a", "s")].value == 5 and o.stats.batches == 1 and o.stats.commands == 2


def test_commands_applied_while_a_commit_is_under_way_build_on_it() -> None:
    gate = threading.Event()
    publisher = FakePublisher()
    publish = publisher.publish
    publisher.publish = lambda *args: (gate.wait(5), publish(*args))  # type: ignore[method-assign]
    o = owner(publisher)
    (p, c1), (_, c2) = add("s", 2, "r1"), add("s", 3, "r2")
    o.batch = [command_at(p, 0, c1)]
    o._apply()
    o._begin_commit(None)
    o.batch = [command_at(p, 1, c2)]
    o._apply()
    assert replies_of(o) == [("r1", 0, 2), ("r2", 0, 5)], "answered on top of the commit under way"
    o._settle()
    assert o.committing is not None and (SEMAPHORE, "a", "s") not in o.stores[p], "not committed yet"
    gate.set()
    o._commit(None)
    assert [offsets for _, offsets in publisher.committed] == [[(p, 1)], [(p, 2)]]
    assert o.stores[p][(SEMAPHORE, "a", "s")].value == 5


def test_a_failed_commit_is_applied_again_with_the_same_answers() -> None:
    publisher = FakePublisher(fail=1)
    o = owner(publisher)
    p, _ = add("s", 0, "r0")
    o.stores[p][(SEMAPHORE, "a", "s")] = Item(1)
    cmds = [add("s", -1, "r1")[1], add("s", -1, "r2")[1], add("s", 5, "r3")[1], add("s", -1, "r1")[1]]
    o.batch = [command_at(p, i, c) for i, c in enumerate(cmds)]
    o._apply()
    first = replies_of(o)
    assert first == [("r1", 0, 0), ("r2", 1, 0), ("r3", 0, 5), ("r1", 0, 0)], \
        "below zero refused; a repeated id: its first answer"
    o._commit(None)
    assert publisher.aborts == 1 and o.stores[p][(SEMAPHORE, "a", "s")].value == 1
    o.replier.sent.clear()
    o._commit(None)
    assert replies_of(o) == first, "the answers given before the failed commit stand"
    assert o.stores[p][(SEMAPHORE, "a", "s")].value == 5


def test_a_revoke_drops_what_was_applied_and_applies_the_kept_partitions_again() -> None:
    first, second = names_on_two_partitions()
    (p1, c1), (p2, c2) = add(first, 1, "r1"), add(second, 1, "r2")
    publisher = FakePublisher()
    o = owner(publisher)
    o.batch = [command_at(p1, 0, c1), command_at(p2, 0, c2)]
    o._apply()
    o._revoked(FakeConsumer(), [type("TP", (), {"partition": p1})()])  # type: ignore[arg-type]
    assert publisher.committed == [], "nothing waits for a commit in the rebalance callback"
    assert [m.partition() for m in o.batch] == [p2], "the kept partition's commands are applied again"
    assert o.open.applied == [] and p1 not in o.stores
    o.replier.sent.clear()
    o._commit(None)
    assert replies_of(o) == [("r2", 0, 1)] and o.stores[p2][(SEMAPHORE, "a", second)].value == 1


class FakeConsumer:
    """Group metadata, committed offsets and seeks, as the owner asks for them."""

    def __init__(self, committed: dict[int, int] | None = None) -> None:
        self._committed = committed or {}
        self.seeks: list[tuple[int, int]] = []

    def consumer_group_metadata(self) -> None:
        return None

    def committed(self, partitions: list, timeout: float) -> list:
        return [type("TP", (), {"partition": tp.partition, "offset": self._committed.get(tp.partition, -1001)})()
                for tp in partitions]

    def seek(self, tp: object) -> None:
        self.seeks.append((tp.partition, tp.offset))  # type: ignore[attr-defined]


def test_a_restore_moves_the_consumer_to_the_committed_offset_and_drops_what_it_had_fetched() -> None:
    o = owner(FakePublisher())
    p, cmd = add("s", 1, "r1")
    o.unrestored = {p}
    o.batch = [command_at(p, 10, cmd), command_at(p, 11, cmd)]
    o.restore = lambda partitions: {q: {} for q in partitions}  # type: ignore[method-assign]
    consumer = FakeConsumer({p: 11})
    o._restore_assigned(consumer)  # type: ignore[arg-type]
    assert consumer.seeks == [(p, 11)], "fetched again from the committed offset, the restored state's"
    assert o.batch == [] and o.unrestored == set()


def test_a_delete_commits_a_tombstone_and_the_delete_memory_and_one_event() -> None:
    from scalebox_stream.events import EventCodec
    from scalebox_stream.state.model import DELETED

    publisher = FakePublisher()
    o = owner(publisher)
    p, created = add("gone", 4, "r1")
    o.batch = [command_at(p, 0, created),
               command_at(p, 1, Command("r2", "delete", SEMAPHORE, "a", "gone", reply_to=0))]
    o._commit(None)
    records, _ = publisher.committed[0]
    changelog = {tuple(json.loads(r.key)): r.value for r in records if r.topic == TOPICS.changelog}
    assert changelog[(SEMAPHORE, "a", "gone")] is None, "a tombstone"
    assert Item.from_json(changelog[DELETED]).recent == {"r2": [0, None]}
    events = [EventCodec().decode(r.value).payload for r in records if r.topic == "sbx.events"]
    assert [(e.op, e.value, e.old_value, e.version) for e in events] == [("add", "4", None, 1),
                                                                         ("delete", "", "4", 2)]
    assert (SEMAPHORE, "a", "gone") not in o.stores[p] and DELETED in o.stores[p]
