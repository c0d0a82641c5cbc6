"""A batch decoded and folded (pure), and the pipelined batch: one transaction sent through one pipeline,
collected later; a refusal is a result, not an exception."""

from __future__ import annotations

import threading
import uuid

import pytest
from fakes.projector_db import FakeServer
from fakes.projector_kafka import FakeMessage, records
from psycopg import errors
from support.workload import generate

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.projector.batch import UNDECODABLE, UNPROJECTABLE, build_batch, decode
from scalebox_stream.projector.database import Database
from scalebox_stream.projector.offsets import OffsetStore
from scalebox_stream.projector.settings import ProjectorSettings
from scalebox_stream.projector.strategies import Applied, PipelinedBatch, Refused

TOPIC = "sbx.test.batch"
CODEC = EventCodec()


def _events(n: int = 40, seed: int = 1) -> list[Event]:
    return list(generate(n, app="batch", seed=seed))


def _batch(events: list[Event], first_offset: int = 0):
    return build_batch(records(TOPIC, [CODEC.encode(e) for e in events], first_offset=first_offset), CODEC)


def _db(server: FakeServer) -> Database:
    db = Database("fake", ProjectorSettings(), threading.Event(), connect=server.connect)
    assert db.open(0)
    return db


def test_a_batch_knows_its_positions_events_and_fold():
    events = _events()
    batch = build_batch([*records(TOPIC, [CODEC.encode(e) for e in events[:10]], partition=0, first_offset=5),
                         *records(TOPIC, [CODEC.encode(e) for e in events[10:]], partition=3)], CODEC, started=1.5)
    assert batch.positions == {0: 15, 3: len(events) - 10}
    assert [e.event_id for e in batch.plain_events] == [e.event_id for e in events]
    assert batch.poison == [] and batch.fold is not None and batch.started == 1.5


def test_decode_keeps_the_first_of_each_event_id_and_sets_poison_apart():
    good = _events(5)
    upper = Event("AppFinished", "batch", {"succeeded": 1, "failed": 0}, event_id=str(uuid.uuid4()).upper())
    not_uuid = Event("AppFinished", "batch", {"succeeded": 1, "failed": 0}, event_id="not-a-uuid")
    values = [CODEC.encode(good[0]), b"not avro", CODEC.encode(good[0]), CODEC.encode(upper), CODEC.encode(not_uuid)]
    events, poison = decode(records(TOPIC, values), CODEC)
    assert [m.offset() for m, _ in events] == [0, 3]
    assert events[1][1].event_id == upper.event_id.lower()
    assert [(d.record.offset(), d.kind) for d in poison] == [(1, UNDECODABLE), (4, UNPROJECTABLE)]
    assert "not a UUID" in poison[1].reason


def test_a_batch_the_fold_refuses_is_left_unfolded(monkeypatch):
    def refuse(events):
        raise ValueError("an event the fold cannot take")

    monkeypatch.setattr("scalebox_stream.projector.batch.fold", refuse)
    batch = _batch(_events(5))
    assert batch.fold is None and len(batch.events) == len(_events(5))


def test_the_pipelined_batch_commits_rows_ids_and_positions_in_one_transaction():
    server = FakeServer()
    db, offsets = _db(server), OffsetStore(TOPIC)
    batch = _batch(_events())
    server.statements.clear()
    with PipelinedBatch(db, offsets, batch) as flight:
        assert flight.result is None, "sent, not waited for"
        assert server.statements[0] == "BEGIN" and server.statements[-1] == "COMMIT"
    result = flight.result
    assert isinstance(result, Applied) and len(result.fresh) == len(batch.events) and result.dead == []
    assert server.state.applied == {e.event_id for e in batch.plain_events}
    assert server.offsets_of(TOPIC) == batch.positions
    assert server.state.merged_tasks and not server.state.staged
    assert flight.wait() is result


def test_events_applied_before_make_the_pipelined_batch_a_refusal_that_commits_nothing():
    server = FakeServer()
    db, offsets = _db(server), OffsetStore(TOPIC)
    events = _events()
    with PipelinedBatch(db, offsets, _batch(events[:10])):
        pass
    flight = PipelinedBatch(db, offsets, _batch(events, first_offset=0))
    flight.send()
    result = flight.wait()
    assert isinstance(result, Refused) and isinstance(result.error, errors.UniqueViolation)
    assert server.offsets_of(TOPIC) == {0: 10}
    assert len(server.state.applied) == 10


def test_a_refusal_while_sending_is_kept_for_wait():
    server = FakeServer()
    events = _events()
    server.refuse_task(next(e.task_id for e in events if e.task_id))
    flight = PipelinedBatch(_db(server), OffsetStore(TOPIC), _batch(events))
    flight.send()
    assert isinstance(flight.result, Refused)
    assert isinstance(flight.wait().error, errors.InvalidTextRepresentation)


def test_a_block_that_raises_abandons_the_batch():
    server = FakeServer()
    with pytest.raises(KeyError), PipelinedBatch(_db(server), OffsetStore(TOPIC), _batch(_events())) as flight:
        raise KeyError("decoding the next batch failed")
    assert isinstance(flight.result, Refused)


def test_only_clean_folded_batches_are_pipelined():
    batch = build_batch([FakeMessage(TOPIC, 0, 0, b"garbage")], CODEC)
    with pytest.raises(AssertionError):
        PipelinedBatch(_db(FakeServer()), OffsetStore(TOPIC), batch)
