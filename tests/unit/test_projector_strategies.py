"""The ordered apply strategies: a clean batch goes the pipelined way; a refused one is applied again in one
synchronous transaction; if the SQL refuses an event, the batch is applied event by event, the poison
dead-lettered and the rest applied. An outage is raised, never dead-lettered."""

from __future__ import annotations

import threading

import psycopg
import pytest
from fakes.projector_db import FakeServer
from fakes.projector_kafka import FakeProducer, records
from psycopg import errors
from support.workload import generate

from scalebox_stream import metrics
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC
from scalebox_stream.projector.batch import UNDECODABLE, UNPROJECTABLE, Batch, build_batch
from scalebox_stream.projector.database import Database
from scalebox_stream.projector.dead_letters import DeadLetterSink
from scalebox_stream.projector.errors import Outage
from scalebox_stream.projector.offsets import OffsetStore
from scalebox_stream.projector.settings import ProjectorSettings
from scalebox_stream.projector.strategies import (
    Applied,
    Applier,
    BulkApply,
    IsolatingApply,
    PipelinedBatch,
    Refused,
    after_pipeline_refused,
)

TOPIC = "sbx.test.strategies"
CODEC = EventCodec()


class Parts:
    """The strategies' collaborators over one fake server."""

    def __init__(self, conflict_retries: int = 5) -> None:
        self.server = FakeServer()
        self.db = Database("fake", ProjectorSettings(reconnect_delay_s=0.001), threading.Event(),
                           connect=self.server.connect)
        assert self.db.open(0)
        self.offsets = OffsetStore(TOPIC)
        self.producer = FakeProducer()
        self.sink = DeadLetterSink(self.producer)
        self.applier = Applier(self.db, self.offsets, self.sink, conflict_retries, reconnect_wait_s=0)


@pytest.fixture
def parts() -> Parts:
    return Parts()


def _events(n: int = 60, seed: int = 2) -> list[Event]:
    return list(generate(n, app="strategies", seed=seed))


def _batch(values: list[bytes]) -> Batch:
    return build_batch(records(TOPIC, values), CODEC)


def _encoded(events: list[Event]) -> list[bytes]:
    return [CODEC.encode(e) for e in events]


def test_a_clean_batch_is_sent_through_the_pipeline(parts):
    events = _events()
    sent = parts.applier.submit(_batch(_encoded(events)))
    assert isinstance(sent, PipelinedBatch) and sent.result is None
    result = parts.applier.settle(sent)
    assert len(result.fresh) == len(events) and result.dead == []
    assert parts.server.offsets_of(TOPIC) == {0: len(events)}


def test_a_refused_pipelined_batch_is_applied_again_on_a_new_connection_skipping_what_was_applied(parts):
    events = _events()
    parts.applier.settle(parts.applier.submit(_batch(_encoded(events[:20]))))
    first = parts.db.conn
    result = parts.applier.settle(parts.applier.submit(_batch(_encoded(events))))
    assert parts.db.conn is not first and first.closed, "a failed pipeline's connection is replaced"
    assert [e.event_id for e in result.fresh] == [e.event_id for e in events[20:]]
    assert result.dead == [] and parts.producer.produced == []
    assert parts.server.state.applied == {e.event_id for e in events}


def test_poison_is_isolated_and_dead_lettered_and_the_rest_applied(parts):
    events = _events()
    culprit = next(e for e in events if e.event_type == "TaskStarted")
    parts.server.refuse_task(culprit.task_id)
    values = _encoded(events)
    values.insert(5, b"not avro at all")
    result = parts.applier.submit(_batch(values))  # poison in the batch: applied at once, the careful way
    assert isinstance(result, Applied)
    culprit_events = {e.event_id for e in events if e.task_id == culprit.task_id}
    assert {d.kind for d in result.dead} == {UNDECODABLE, UNPROJECTABLE}
    assert [d.record.offset() for d in result.dead if d.kind == UNDECODABLE] == [5]
    dead_ids = {CODEC.decode(d.record.value()).event_id for d in result.dead if d.kind == UNPROJECTABLE}
    assert dead_ids and dead_ids <= culprit_events
    assert all("InvalidTextRepresentation" in d.reason for d in result.dead if d.kind == UNPROJECTABLE)
    applied = parts.server.state.applied
    assert {e.event_id for e in events} - dead_ids == applied, "every other event is applied"
    assert parts.server.offsets_of(TOPIC) == {0: len(values)}
    assert [row[2] for row in parts.server.state.dead_letters][0] == 5
    assert len(parts.server.state.dead_letters) == len(result.dead)
    assert [p["topic"] for p in parts.producer.produced] == [DEAD_LETTER_TOPIC] * len(result.dead)


def test_an_unfolded_batch_is_applied_the_careful_way(parts):
    events = _events(20)
    batch = _batch(_encoded(events))
    batch.fold = None
    result = parts.applier.submit(batch)
    assert isinstance(result, Applied) and len(result.fresh) == len(events)


def _clashes(times: int):
    count = {"n": 0}

    def rule(sql: str, row: object) -> Exception | None:
        if sql.startswith("INSERT INTO applied_events") and count["n"] < times:
            count["n"] += 1
            return errors.DeadlockDetected("deadlock detected")
        return None
    return rule, count


def test_a_clash_with_another_projector_is_applied_again_at_once():
    parts = Parts(conflict_retries=2)
    rule, count = _clashes(2)
    parts.server.refuse(rule)
    events = _events(20)
    before = metrics.BATCH_CONFLICTS._value.get()
    result = BulkApply(parts.db, parts.offsets, parts.sink, 2).apply(_batch(_encoded(events)))
    assert isinstance(result, Applied) and len(result.fresh) == len(events)
    assert count["n"] == 2 and metrics.BATCH_CONFLICTS._value.get() == before + 2


def test_clashes_beyond_the_retries_are_an_outage():
    parts = Parts(conflict_retries=1)
    parts.server.refuse(_clashes(5)[0])
    with pytest.raises(Outage):
        BulkApply(parts.db, parts.offsets, parts.sink, 1).apply(_batch(_encoded(_events(10))))
    assert parts.server.state.applied == set()


def test_a_refusal_of_the_content_moves_on_to_the_next_strategy(parts):
    events = _events(20)
    parts.server.refuse_task(next(e.task_id for e in events if e.task_id))
    result = BulkApply(parts.db, parts.offsets, parts.sink, 5).apply(_batch(_encoded(events)))
    assert isinstance(result, Refused) and isinstance(result.error, errors.InvalidTextRepresentation)
    assert parts.server.state.applied == set() and parts.server.offsets_of(TOPIC) == {}


def test_a_crashed_database_is_an_outage_for_every_strategy(parts):
    batch = _batch(_encoded(_events(10)))
    parts.server.crash()
    for strategy in (BulkApply(parts.db, parts.offsets, parts.sink, 5),
                     IsolatingApply(parts.db, parts.offsets, parts.sink)):
        with pytest.raises(Outage):
            strategy.apply(batch)
    flight = PipelinedBatch(parts.db, parts.offsets, batch)
    flight.send()
    refused = flight.wait()
    assert isinstance(refused, Refused)
    with pytest.raises(Outage):
        after_pipeline_refused(parts.db, refused.error, 0)


def test_the_isolating_path_raises_an_outage_met_between_events(parts):
    events = _events(20)
    victim = next(e.task_id for e in events if e.task_id)

    def crash_on(sql: str, row: object) -> Exception | None:
        if sql.startswith("COPY sbx_stage_") and isinstance(row, tuple) and victim in row:
            parts.server.crash()
            return psycopg.OperationalError("server closed the connection unexpectedly")
        return None
    parts.server.refuse(crash_on)
    with pytest.raises(Outage):
        IsolatingApply(parts.db, parts.offsets, parts.sink).apply(_batch(_encoded(events)))


def test_when_every_strategy_refuses_the_last_refusal_is_raised(parts):
    def refuse_positions(sql: str, row: object) -> Exception | None:
        return errors.CheckViolation("positions refused") if sql.startswith("INSERT INTO projector_offsets") \
            else None
    parts.server.refuse(refuse_positions)
    with pytest.raises(errors.CheckViolation):
        parts.applier.apply_carefully(_batch(_encoded(_events(10))))


def test_a_refused_pipelined_batch_waits_for_a_reconnect_that_a_stop_ends(parts):
    stop = threading.Event()
    parts.db._stop = stop
    parts.server.down = True
    stop.set()
    with pytest.raises(Outage, match="stopped"):
        after_pipeline_refused(parts.db, errors.UniqueViolation("duplicate"), -1)


def test_a_pipelined_batch_needs_a_connection():
    parts = Parts()
    parts.db.conn = None
    flight = PipelinedBatch(parts.db, parts.offsets, _batch(_encoded(_events(5))))
    flight.send()
    assert isinstance(flight.wait(), Refused)
    with pytest.raises(Outage):
        BulkApply(parts.db, parts.offsets, parts.sink, 0).apply(_batch(_encoded(_events(5))))


def test_dead_letters_carry_their_source(parts):
    batch = _batch([b"garbage"])
    parts.applier.submit(batch)
    (produced,) = parts.producer.produced
    assert produced["value"] == b"garbage" and produced["key"] == b"k"
    headers = produced["headers"]
    assert headers["kind"] == b"undecodable" and headers["consumer"] == b"projector"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == \
        (TOPIC.encode(), b"0", b"0")
    assert headers["error"]
