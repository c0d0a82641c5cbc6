"""The projector's offset store: positions live in PostgreSQL with the rows, are read on assignment and on
rewind, and never come from Kafka."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from fakes.projector_db import FakeServer
from fakes.projector_kafka import FakeConsumer

from scalebox_stream.projector.offsets import OffsetStore

TOPIC = "sbx.test.offsets"


@pytest.fixture
def server() -> FakeServer:
    server = FakeServer()
    server.state.offsets.update({(TOPIC, 0): 40, (TOPIC, 2): 7, ("other", 1): 99})
    return server


def _tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


def test_load_reads_the_stored_positions_of_the_topic_only(server):
    store = OffsetStore(TOPIC)
    assert store.load(server.connect(), [0, 1, 2]) == {0: 40, 2: 7}


def test_assigned_partitions_start_at_their_stored_position_or_the_beginning(server):
    store, consumer = OffsetStore(TOPIC), FakeConsumer(logs={0: [], 1: [], 2: []})
    store.at_end = {1, 5}
    assert store.assign(consumer, server.connect(), _tps(0, 1))
    assert consumer.calls == [("assign", ((0, 40), (1, OFFSET_BEGINNING)))]
    assert store.assigned == [0, 1] and store.at_end == {5}
    assert store.assign(consumer, server.connect(), _tps(2))
    assert store.assigned == [0, 1, 2]
    assert consumer.paused == set()


def test_a_database_that_cannot_tell_the_positions_holds_the_partitions_paused(server):
    store, consumer = OffsetStore(TOPIC), FakeConsumer()
    conn = server.connect()
    server.crash()
    assert not store.assign(consumer, conn, _tps(0, 2))
    assert consumer.calls == [("assign", ((0, OFFSET_BEGINNING), (2, OFFSET_BEGINNING))), ("pause", (0, 2))]
    assert not store.assign(FakeConsumer(), None, _tps(1))  # not connected at all
    assert store.assigned == [0, 1, 2]


def test_revoked_partitions_are_forgotten(server):
    store, consumer = OffsetStore(TOPIC), FakeConsumer()
    store.assign(consumer, server.connect(), _tps(0, 1, 2))
    store.revoke(consumer, _tps(1))
    assert store.assigned == [0, 2]
    assert consumer.calls[-1] == ("unassign",)


def test_rewind_restarts_every_assigned_partition_at_its_stored_position(server):
    store, consumer = OffsetStore(TOPIC), FakeConsumer()
    conn = server.connect()
    store.assign(consumer, conn, _tps(0, 1, 2))
    store.advanced({0: 55, 1: 3})
    store.at_end = {0, 1}
    store.rewind(consumer, conn)
    assert consumer.calls[-2:] == [("assign", ((0, 40), (1, OFFSET_BEGINNING), (2, 7))), ("resume", (0, 1, 2))]
    assert store.committed == {0: 40, 2: 7}
    assert store.at_end == set()


def test_rewind_without_partitions_touches_no_consumer(server):
    store, consumer = OffsetStore(TOPIC), FakeConsumer()
    store.rewind(consumer, server.connect())
    assert consumer.calls == [] and store.committed == {}


def test_positions_are_stored_in_the_callers_transaction(server):
    store, conn = OffsetStore(TOPIC), server.connect()
    with conn.transaction(), conn.cursor() as cur:
        store.store(cur, {0: 41, 3: 5})
    assert server.offsets_of(TOPIC) == {0: 41, 2: 7, 3: 5}
    with pytest.raises(RuntimeError), conn.transaction(), conn.cursor() as cur:
        store.store(cur, {0: 100})
        raise RuntimeError("the rows failed")
    assert server.offsets_of(TOPIC)[0] == 41, "positions roll back with the rows"


def test_caught_up_and_lag():
    store, consumer = OffsetStore(TOPIC), FakeConsumer()
    assert not store.caught_up(), "nothing assigned is not caught up"
    store.assigned = [0, 1]
    store.at_end = {0}
    assert not store.caught_up()
    store.at_end.add(1)
    assert store.caught_up()
    consumer.watermarks = {0: 10, 1: -1}
    store.committed = {0: 4}
    assert store.lag(consumer) == 6
    store.committed = {0: 12}
    assert store.lag(consumer) == 0
