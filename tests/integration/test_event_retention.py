"""The events topic keeps every event, and `scalebox replay` names what is gone when it no longer does.

A broker of the test's own (`local.kafka` in a home of its own) holds an events topic made with a short
retention, as a topic made before scalebox kept its events would have the broker's: the broker deletes its
first events, then `replay` refuses and names the partitions and offsets lost; `--allow-gaps` rebuilds from
what is left and warns. The shared topics' set-up then sets the topic to keep its events."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from pipeline import free_port, scalebox
from support import verify
from support.homes import broker_settings_on_top, share_kafka_jars

from scalebox_stream.kafka.config import admin_config, producer_config
from scalebox_stream.kafka.log_start import find_gaps
from scalebox_stream.kafka.topics import EVENTS_TOPIC, KEEP_FOREVER, ensure_shared_topics, ensure_topics
from scalebox_stream.local import kafka

PROMPT_RETENTION = {"log.initial.task.delay.ms": 0, "log.retention.check.interval.ms": 1000}


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str) -> Iterator[str]:
    """A single-node broker in a home of its own (the shared broker's jars reused); its bootstrap. It checks
    retention every second from its start (by default the first check comes 30 s after it starts, then every 10 s)."""
    monkeypatch.setattr(kafka, "render_properties", broker_settings_on_top(PROMPT_RETENTION))
    monkeypatch.setenv("SCALEBOX_HOME", str(share_kafka_jars(tmp_path / "home")))
    info = kafka.start(free_port(), free_port())
    try:
        yield info.bootstrap
    finally:
        kafka.stop(grace=10)


def produce(bootstrap: str, partition: int, count: int) -> None:
    """`count` records (not events: the projector dead-letters them) into one partition of the events topic."""
    producer = Producer(producer_config(bootstrap))
    for i in range(count):
        producer.produce(EVENTS_TOPIC, value=f"not an event {i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def retention_ms(admin: AdminClient) -> str:
    resource = ConfigResource(ResourceType.TOPIC, EVENTS_TOPIC)
    return admin.describe_configs([resource])[resource].result(30)["retention.ms"].value


def test_replay_names_the_events_a_short_retention_deleted(own_broker, pg_dsn):
    admin = AdminClient(admin_config(own_broker))
    ensure_topics(admin, {EVENTS_TOPIC: 2}, configs={EVENTS_TOPIC: {"retention.ms": "1000", "segment.ms": "100"}})
    produce(own_broker, 0, 5)
    produce(own_broker, 1, 5)
    deadline = time.monotonic() + 120
    while [(g.partition, g.first_kept) for g in find_gaps(own_broker, EVENTS_TOPIC)] != [(0, 5), (1, 5)]:
        assert time.monotonic() < deadline, f"the broker kept the old segments: {find_gaps(own_broker, EVENTS_TOPIC)}"
        time.sleep(0.2)

    ensure_shared_topics(admin)  # what deploy, the agent and the projector do: the events are kept from now on
    assert retention_ms(admin) == KEEP_FOREVER["retention.ms"]
    produce(own_broker, 0, 3)

    refused = scalebox(["replay", "--yes"], own_broker, pg_dsn, timeout=120)
    assert refused.code == 1, refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if not line.startswith("%")]  # not librdkafka's logs
    assert "sbx.events no longer starts at its first event: 10 offset(s) are gone from 2 partition(s)" in lines[0]
    first_kept = re.fullmatch(r"  partition 0: offsets 0-4 \(events before (.+) UTC are gone\)", lines[1])
    assert first_kept, refused.stderr
    when = datetime.strptime(first_kept[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=5), "the time of the first event still there"
    assert lines[2] == "  partition 1: offsets 0-4 (every event it held is gone)"
    assert "the projection is left as it is" in refused.stderr and "--allow-gaps" in refused.stderr

    db = f"sbx_gaps_{uuid.uuid4().hex[:8]}"
    dsn = verify.create_database(pg_dsn, db)
    try:
        allowed = scalebox(["replay", "--yes", "--allow-gaps"], own_broker, dsn, timeout=120)
        assert allowed.code == 0, allowed.stdout + allowed.stderr
        assert "warning: sbx.events no longer starts at its first event" in allowed.stderr
        assert "partition 0: offsets 0-4" in allowed.stderr
        assert "replayed 3 event(s) (0 applied, 3 dead-lettered)" in allowed.stdout
    finally:
        verify.drop_database(pg_dsn, db)
