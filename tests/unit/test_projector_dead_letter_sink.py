"""The dead-letter sink: a record the projector cannot take is written to `dead_letters` in the batch's
transaction and to the dead-letter topic before it commits; an unacknowledged topic fails the batch."""

from __future__ import annotations

import pytest
from fakes.projector_db import FakeServer
from fakes.projector_kafka import FakeMessage, FakeProducer

from scalebox_stream import metrics
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC
from scalebox_stream.projector.batch import UNDECODABLE, UNPROJECTABLE, DeadLetter
from scalebox_stream.projector.dead_letters import DeadLetterSink
from scalebox_stream.projector.errors import Outage

TOPIC = "sbx.test.sink"


def _dead() -> list[DeadLetter]:
    return [DeadLetter(FakeMessage(TOPIC, 2, 17, b"\x00junk", b"key-1"), UNDECODABLE, "bad magic"),
            DeadLetter(FakeMessage(TOPIC, 0, 4, b"event"), UNPROJECTABLE, "NotNullViolation: app")]


def test_dead_letters_are_recorded_in_the_transaction_and_published_with_their_source():
    server, producer = FakeServer(), FakeProducer()
    sink = DeadLetterSink(producer, flush_timeout_s=3)
    conn = server.connect()
    with conn.transaction(), conn.cursor() as cur:
        sink.write(cur, _dead())
    assert server.state.dead_letters == [(TOPIC, 2, 17, "undecodable: bad magic"),
                                         (TOPIC, 0, 4, "unprojectable: NotNullViolation: app")]
    first = producer.produced[0]
    assert (first["topic"], first["key"], first["value"]) == (DEAD_LETTER_TOPIC, b"key-1", b"\x00junk")
    assert first["headers"] == {"error": b"bad magic", "kind": b"undecodable", "source_topic": TOPIC.encode(),
                                "source_partition": b"2", "source_offset": b"17", "consumer": b"projector"}
    assert producer.produced[1]["headers"]["kind"] == b"unprojectable"
    assert producer.flushes == 1


def test_an_unacknowledged_topic_is_an_outage_and_the_rows_roll_back():
    server, producer = FakeServer(), FakeProducer(unacknowledged=1)
    sink = DeadLetterSink(producer)
    conn = server.connect()
    with pytest.raises(Outage), conn.transaction(), conn.cursor() as cur:
        sink.write(cur, _dead())
    assert server.state.dead_letters == []


def test_nothing_to_write_costs_nothing():
    server, producer = FakeServer(), FakeProducer()
    conn = server.connect()
    DeadLetterSink(producer).write(conn.cursor(), [])
    assert server.statements == [] and producer.flushes == 0


def test_committed_dead_letters_are_counted_by_kind():
    sink = DeadLetterSink(FakeProducer())
    before = {k: metrics.DEAD_LETTERS.labels(k)._value.get() for k in (UNDECODABLE, UNPROJECTABLE)}
    sink.count_committed([*_dead(), _dead()[0]])
    assert sink.committed == {UNDECODABLE: 2, UNPROJECTABLE: 1}
    assert metrics.DEAD_LETTERS.labels(UNDECODABLE)._value.get() == before[UNDECODABLE] + 2
    assert metrics.DEAD_LETTERS.labels(UNPROJECTABLE)._value.get() == before[UNPROJECTABLE] + 1


def test_closing_flushes_what_is_queued():
    producer = FakeProducer()
    DeadLetterSink(producer).close(1)
    assert producer.flushes == 1
