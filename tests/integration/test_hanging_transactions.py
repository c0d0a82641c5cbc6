"""A hanging transaction made on purpose, on a broker of the test's own with the local broker's settings
(`transaction.partition.verification.enable=false`): what it stalls, and that `local.hanging` clears it.

A broker restart can leave a partition holding a transaction the coordinator no longer tracks (it skipped the
partition's marker). This test makes the same state without a restart: a transactional producer writes to a
partition it never added to its transaction (no AddPartitionsToTxn). With verification off the partition leader
takes the write without asking the coordinator (KIP-890 verification; Produce v12+ and TxnOffsetCommit v5+ have
the broker add the partition itself, so the rogue writer sends older versions). librdkafka always adds a partition
first, so the rogue writer is `kafka-python`'s protocol classes (a test-only dependency). The test asserts:
- a read-committed consumer stops before the hanging batch: a record committed after it is not delivered;
- `committed()` of a group with a hanging offset commit never answers (it waits for stable offsets, KIP-447);
- the `HangingReaper` (as `scalebox run` starts it) and `abort_hanging` (what `scalebox local repair` runs) abort
  exactly the hanging transaction, after which the reader goes on, and nothing committed is lost."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.net.compat import KafkaNetClient
from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest, TxnOffsetCommitRequest
from kafka.record.memory_records import MemoryRecordsBuilder
from private_kafka import PrivateKafka, running

from scalebox_stream.local.hanging import BROKER_ID, Hanging, HangingReaper, abort_hanging

NODE = int(BROKER_ID)  # the private broker is node 1, like the local one
TRANSACTION, GROUP = 1, 0  # FindCoordinator key types
# The hanging batch's timestamp: `find-hanging` ages an open transaction by its last record's timestamp (set by
# the producer), so a batch stamped 10 minutes ago is past the reaper's 2-minute limit at once.
BACKDATE_MS = 10 * 60_000


class RogueProducer:
    """A transactional producer that writes without adding the partition (or the group) to its transaction: what
    a transaction looks like to a partition whose marker the coordinator skipped."""

    def __init__(self, bootstrap: str, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self.client = KafkaNetClient(bootstrap_servers=bootstrap)
        self.client.check_version()  # bootstraps the cluster metadata
        self._find_coordinator(transactional_id, TRANSACTION)
        deadline = time.monotonic() + 30
        while (init := self.client.send_and_receive(NODE, InitProducerIdRequest(
                transactional_id=transactional_id, transaction_timeout_ms=60_000))).error_code != 0:
            assert time.monotonic() < deadline, f"InitProducerId: {init}"
            time.sleep(0.2)  # the coordinator is still loading
        self.producer_id, self.epoch = init.producer_id, init.producer_epoch

    def _find_coordinator(self, key: str, key_type: int) -> None:
        """Wait until node 1 coordinates `key` (the first request creates the internal topic)."""
        deadline = time.monotonic() + 30
        while True:
            found = self.client.send_and_receive(NODE, FindCoordinatorRequest(
                key=key, key_type=key_type, coordinator_keys=[key])).coordinators[0]
            if found.error_code == 0:
                assert found.node_id == NODE
                return
            assert time.monotonic() < deadline, f"FindCoordinator({key}): {found}"
            time.sleep(0.2)

    def produce(self, topic: str, partition: int, value: bytes, timestamp_ms: int) -> int:
        """One transactional record, the partition never added to the transaction; returns its offset."""
        batch = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 16, transactional=True,
                                     producer_id=self.producer_id, producer_epoch=self.epoch, base_sequence=0)
        batch.append(timestamp=timestamp_ms, key=None, value=value)
        batch.close()
        data = ProduceRequest.TopicProduceData
        reply = self.client.send_and_receive(NODE, ProduceRequest(
            transactional_id=self.transactional_id, acks=-1, timeout_ms=10_000, max_version=11,
            topic_data=[data(name=topic, partition_data=[
                data.PartitionProduceData(index=partition, records=bytes(batch.buffer()))])]))
        written = reply.responses[0].partition_responses[0]
        assert written.error_code == 0, reply
        return written.base_offset

    def commit_offset(self, group: str, topic: str, partition: int, offset: int) -> None:
        """A transactional offset commit for `group`, the group never added to the transaction."""
        self._find_coordinator(group, GROUP)
        data = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic
        reply = self.client.send_and_receive(NODE, TxnOffsetCommitRequest(
            transactional_id=self.transactional_id, group_id=group, producer_id=self.producer_id,
            producer_epoch=self.epoch, generation_id=-1, member_id="", group_instance_id=None, max_version=4,
            topics=[data(name=topic, partitions=[data.TxnOffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata="")])]))
        assert reply.topics[0].partitions[0].error_code == 0, reply

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    with running(tmp_path_factory.mktemp("hanging") / "kafka") as kafka:
        yield kafka


@pytest.fixture
def rogue(broker: PrivateKafka) -> Iterator[RogueProducer]:
    producer = RogueProducer(broker.bootstrap, f"rogue-{uuid.uuid4().hex[:8]}")
    yield producer
    producer.close()


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"hang-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def transactional(bootstrap: str) -> Producer:
    """A librdkafka transactional producer, as the agents use."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txn-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    return producer


def commit_one(producer: Producer, topic: str, partition: int, value: bytes) -> None:
    producer.begin_transaction()
    producer.produce(topic, value, partition=partition)
    producer.commit_transaction(30)


def reader(bootstrap: str, topic: str, partition: int, isolation: str = "read_committed") -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "isolation.level": isolation, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    return consumer


def read(consumer: Consumer, want: int, timeout_s: float) -> list[bytes]:
    """Values delivered within `timeout_s` (returns early once `want` arrived)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            got.append(message.value())
    return got


def test_a_hanging_transaction_stalls_read_committed_readers_until_the_reaper_aborts_it(
        broker: PrivateKafka, rogue: RogueProducer, caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = broker.bootstrap
    topic = new_topic(bootstrap, 2)
    producer = transactional(bootstrap)
    commit_one(producer, topic, 0, b"before")
    hanging_at = rogue.produce(topic, 0, b"hanging", int(time.time() * 1000) - BACKDATE_MS)
    commit_one(producer, topic, 0, b"after")
    live = transactional(bootstrap)  # a transaction still in progress on partition 1: the reaper leaves it be
    live.begin_transaction()
    live.produce(topic, b"live", partition=1)
    live.flush(10)

    everything = reader(bootstrap, topic, 0, "read_uncommitted")
    assert read(everything, 3, 20) == [b"before", b"hanging", b"after"]
    everything.close()
    committed = reader(bootstrap, topic, 0)
    assert read(committed, 1, 20) == [b"before"]
    assert read(committed, 1, 3) == [], "the read-committed reader passed the hanging transaction"

    caplog.set_level(logging.WARNING, logger="scalebox_stream.local.hanging")
    started = time.monotonic()
    reaper = HangingReaper(bootstrap, interval_s=1).start()  # the production limit: open over 2 minutes
    try:
        while not reaper.aborted:
            assert time.monotonic() - started < 60, "the reaper aborted nothing within 60 s"
            time.sleep(0.2)
    finally:
        reaper.stop()
    print(f"the reaper aborted {reaper.aborted} after {time.monotonic() - started:.1f}s")
    assert reaper.aborted == [Hanging(topic, 0, rogue.producer_id, hanging_at)]
    assert f"aborting a hanging transaction on {topic}[0] from offset {hanging_at}" in caplog.text

    assert read(committed, 1, 20) == [b"after"]  # the hanging record aborted, the committed one delivered
    live.commit_transaction(30)
    second = reader(bootstrap, topic, 1)
    assert read(second, 1, 20) == [b"live"]
    for consumer in (committed, second):
        consumer.close()


def test_a_hanging_offset_commit_blocks_committed_until_repair_aborts_it(
        broker: PrivateKafka, rogue: RogueProducer) -> None:
    """The group coordinator stamps offset records with its own clock, so this hanging transaction cannot be
    aged: `abort_hanging` with `max_minutes=0` (`scalebox local repair --max-minutes 0`) takes every open
    transaction its coordinator does not know of, safe here where no other transaction is in progress."""
    bootstrap = broker.bootstrap
    topic, group = new_topic(bootstrap, 1), f"group-{uuid.uuid4().hex[:8]}"
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    partition = TopicPartition(topic, 0, 1)
    member.commit(offsets=[partition], asynchronous=False)
    rogue.commit_offset(group, topic, 0, 2)

    started = time.monotonic()
    with pytest.raises(KafkaException) as stuck:
        member.committed([TopicPartition(topic, 0)], timeout=3)
    assert stuck.value.args[0].code() == KafkaError._TIMED_OUT
    assert time.monotonic() - started >= 2.5

    aborted = abort_hanging(bootstrap, max_minutes=0)
    assert [(h.topic, h.producer_id) for h in aborted] == [("__consumer_offsets", rogue.producer_id)]
    assert [p.offset for p in member.committed([TopicPartition(topic, 0)], timeout=10)] == [1]
    member.close()
