"""The projector's batch wait: events that trickle in are handed to it together (fewer, larger PostgreSQL
transactions, and no wake-up per agent commit), yet each is projected within the wait; with no wait, every
trickle is a batch of its own."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from support import verify, workload

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import producer_config
from scalebox_stream.projector.service import Projector, ProjectorSettings

TRICKLES = 6
TRICKLE_GAP_S = 0.2
WAIT_MS = 2000
"""Longer than the trickles take: at most one fetch answer falls among them, and a fetch's partitions may reach
the projector's queue a moment apart (one more batch), hence at most 3 batches against one per trickle."""


def _events_in_trickles(app: str) -> list[list]:
    events = list(workload.generate(120, app=app, children=2))
    size = len(events) // (TRICKLES + 1) + 1
    return [events[i:i + size] for i in range(0, len(events), size)]


def _wait_for(projector: Projector, events: int, timeout_s: float) -> float:
    """Seconds until the projector has applied `events` events in all."""
    started = time.monotonic()
    while projector.stats.events < events:
        assert time.monotonic() - started < timeout_s, f"{projector.stats.events}/{events} events after {timeout_s}s"
        time.sleep(0.005)
    return time.monotonic() - started


@pytest.mark.parametrize(("batch_wait_ms", "max_batches", "min_batches"), [(0, None, TRICKLES), (WAIT_MS, 3, 1)])
def test_trickled_events_are_projected_together_within_the_wait(kafka_bootstrap, pg_dsn, batch_wait_ms,
                                                                 max_batches, min_batches):
    tag = uuid.uuid4().hex[:8]
    topic, database = f"sbx.test.wait.{tag}", f"wait_{tag}"
    first, *trickles = _events_in_trickles(f"wait-{tag}")
    assert len(trickles) == TRICKLES
    workload.produce(kafka_bootstrap, topic, first)  # creates the topic
    dsn = verify.create_database(pg_dsn, database)
    projector = Projector(kafka_bootstrap, dsn, ProjectorSettings(batch_size=1000, batch_wait_ms=batch_wait_ms),
                          group=f"sbx.test.{tag}", topic=topic)
    runner = threading.Thread(target=projector.run, kwargs={"install_signals": False}, daemon=True)
    runner.start()
    try:
        _wait_for(projector, len(first), timeout_s=60)
        batches_before = projector.stats.batches
        producer, codec = Producer(producer_config(kafka_bootstrap)), EventCodec()
        for trickle in trickles:
            for event in trickle:
                producer.produce(topic, key=event.task_id or event.app, value=codec.encode(event))
            assert producer.flush(10) == 0
            time.sleep(TRICKLE_GAP_S)
        lag = _wait_for(projector, len(first) + sum(map(len, trickles)), timeout_s=batch_wait_ms / 1000 + 5)
        batches = projector.stats.batches - batches_before
        assert batches >= min_batches
        if max_batches is not None:
            assert batches <= max_batches, f"{TRICKLES} trickles {TRICKLE_GAP_S}s apart took {batches} batches"
        assert lag <= batch_wait_ms / 1000 + 2, f"projected {lag:.2f}s after the last trickle"
        assert projector.stats.dead_letters == 0
    finally:
        projector.request_stop()
        runner.join(timeout=30)
        verify.drop_database(pg_dsn, database)
