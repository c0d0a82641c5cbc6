"""The owner's batch over a fake Kafka edge: the commands of all its partitions commit in one transaction with each
partition's offset; a failed transaction keeps the batch (applied again from the committed state); a revoked
partition's uncommitted commands are dropped (its next owner reads them again)."""

from __future__ import annotations

import json
import threading

from confluent_kafka import KafkaError, KafkaException

from scalebox_stream.state.model import SEMAPHORE, Command, Item, StateTopics, partition_of
from scalebox_stream.state.owner import Owner

TOPICS = StateTopics("sbx.unit.state")


class FakeMessage:
    def __init__(self, partition: int, offset: int, cmd: Command) -> None:
        self._p, self._o, self._v = partition, offset, cmd.to_json()

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None


class FakePublisher:
    """Records each transaction; fails the next `fail` ones with a retriable (not fatal) error."""

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


def owner(publisher: FakePublisher) -> Owner:
    o = Owner("unused:9092", TOPICS, "unit", stop=threading.Event())
    o.publisher = publisher  # type: ignore[assignment]
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
    o.batch = [FakeMessage(p1, 10, c1), FakeMessage(p1b, 11, c2), FakeMessage(p2, 40, c3)]
    o._commit(None)
    assert len(publisher.committed) == 1 and o.batch == []
    records, offsets = publisher.committed[0]
    assert sorted(offsets) == sorted([(p1, 12), (p2, 41)])
    replies = [json.loads(r.value) for r in records if r.topic == TOPICS.replies]
    assert [(r["id"], r["value"]) for r in replies] == [("r1", 2), ("r2", 5), ("r3", 5)]
    changelog = {(r.partition, json.loads(r.key)[2]): Item.from_json(r.value).value for r in records
                 if r.topic == TOPICS.changelog}
    assert changelog == {(p1, first): 5, (p2, second): 5}, "one changelog record per item, its latest value"
    assert o.stores[p1][(SEMAPHORE, "a", first)].value == 5
    assert o.stats.commands == 3 and o.stats.batches == 1


def test_a_failed_transaction_keeps_the_batch_and_applies_it_again_from_the_committed_state() -> None:
    publisher = FakePublisher(fail=1)
    o = owner(publisher)
    p, cmd = add("s", 4, "r1")
    o.batch = [FakeMessage(p, 0, cmd)]
    o._commit(None)
    assert publisher.aborts == 1 and publisher.committed == [] and len(o.batch) == 1
    assert (SEMAPHORE, "a", "s") not in o.stores[p], "nothing of the failed transaction is in the state"
    o._commit(None)
    replies = [json.loads(r.value) for r in publisher.committed[0][0] if r.topic == TOPICS.replies]
    assert [(r["id"], r["value"]) for r in replies] == [("r1", 4)], "applied once, not twice"


def test_a_revoked_partition_drops_its_uncommitted_commands_and_state() -> None:
    o = owner(FakePublisher())
    first, second = names_on_two_partitions()
    (p1, c1), (p2, c2) = add(first, 1, "r1"), add(second, 1, "r2")
    o.batch = [FakeMessage(p1, 0, c1), FakeMessage(p2, 0, c2)]
    o._revoked(None, [type("TP", (), {"partition": p1})()])  # type: ignore[arg-type]
    assert [m.partition() for m in o.batch] == [p2] and p1 not in o.stores
