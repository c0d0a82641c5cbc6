"""Bad input never stops the projector: undecodable records and events the SQL refuses are dead-lettered
(topic `sbx.dlq` with error/source headers, a `dead_letters` row, a Prometheus counter); the rest of the batch
is projected."""

from __future__ import annotations

import urllib.request
import uuid

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import free_port
from support import verify, workload

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import admin_config, producer_config, secured
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, ensure_topics
from scalebox_stream.projector.service import Projector, ProjectorSettings


def _dlq_end(bootstrap: str) -> int:
    ensure_topics(AdminClient(admin_config(bootstrap)), {DEAD_LETTER_TOPIC: 1})
    c = Consumer(secured({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"}))
    try:
        return c.get_watermark_offsets(TopicPartition(DEAD_LETTER_TOPIC, 0), timeout=10)[1]
    finally:
        c.close()


def _dlq_records(bootstrap: str, start: int, source_topic: str) -> list[dict[str, str]]:
    c = Consumer(secured({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                          "enable.partition.eof": True, "isolation.level": "read_committed"}))
    c.assign([TopicPartition(DEAD_LETTER_TOPIC, 0, start)])
    found = []
    try:
        while True:
            m = c.poll(10)
            assert m is not None, "dead-letter topic read timed out"
            if m.error():
                break
            headers = {k: v.decode() for k, v in (m.headers() or [])}
            if headers.get("source_topic") == source_topic:
                found.append(headers)
    finally:
        c.close()
    return found


def _metric(port: int, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    return 0.0


def test_bad_events_are_dead_lettered_and_the_rest_is_projected(kafka_bootstrap, pg_dsn):
    tag = uuid.uuid4().hex[:8]
    topic, app = f"sbx.test.dlq.{tag}", f"dlq-{tag}"
    good = list(workload.generate(300, app=app))
    codec = EventCodec()
    bad_task = Event("TaskAccepted", app, {"agent": "a", "slot": 0, "topic": "t", "partition": 0, "offset": 0},
                     module="calc", task_id="not-a-uuid", attempt=1)
    bad_edges = Event("TaskFinished", app, {**next(e for e in good if e.event_type == "TaskFinished").payload,
                                            "emitted_task_ids": [str(uuid.uuid4())], "emitted_modules": []},
                      module="calc", task_id=str(uuid.uuid4()), attempt=1)
    nul_body = Event("TaskCreated", app, {"body": "a\x00b", "headers": {}, "parent_task_id": None, "not_before": None,
                                          "topic": "t"}, module="calc", task_id=str(uuid.uuid4()), attempt=1)
    raw = [codec.encode(e) for e in good]
    raw[10:10] = [b"not avro at all", codec.header + b"\xff\xff\xff", codec.encode(bad_task), codec.encode(bad_edges),
                  codec.encode(nul_body)]
    ensure_topics(AdminClient(admin_config(kafka_bootstrap)), {topic: 1})
    producer = Producer(producer_config(kafka_bootstrap))
    for value in raw:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0

    port = free_port()
    dlq_start = _dlq_end(kafka_bootstrap)
    db = f"dlq_{tag}"
    dsn = verify.create_database(pg_dsn, db)
    try:
        projector = Projector(kafka_bootstrap, dsn, ProjectorSettings(batch_size=1000), group=f"sbx.test.{tag}",
                              topic=topic, metrics_port=port)
        projector.start()  # serves the metrics
        undecodable_before = _metric(port, "scalebox_projector_dead_letters_total", '{reason="undecodable"}')
        unprojectable_before = _metric(port, "scalebox_projector_dead_letters_total", '{reason="unprojectable"}')
        stats = projector.run(until_caught_up=True, install_signals=False)
        assert stats.dead_letters == 5
        assert stats.applied == len(good)
        with psycopg.connect(dsn) as conn:
            reasons = [r for (r,) in conn.execute('SELECT reason FROM dead_letters ORDER BY "offset"')]
            n_events = conn.execute("SELECT count(*) FROM applied_events").fetchone()[0]
            statuses = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
        assert [r.split(":")[0] for r in reasons] == ["undecodable"] * 2 + ["unprojectable"] * 3
        assert "uuid" in reasons[2].lower() and "emitted" in reasons[3]
        assert "0x00" in reasons[4] or "NUL" in reasons[4]
        assert n_events == len(good)
        assert set(statuses) <= {"succeeded", "failed"}, statuses
        assert _metric(port, "scalebox_projector_dead_letters_total", '{reason="undecodable"}') \
            == undecodable_before + 2
        assert _metric(port, "scalebox_projector_dead_letters_total", '{reason="unprojectable"}') \
            == unprojectable_before + 3
        assert _metric(port, "scalebox_projector_events_total", '{event_type="TaskFinished"}') > 0
    finally:
        verify.drop_database(pg_dsn, db)

    dead = _dlq_records(kafka_bootstrap, dlq_start, topic)
    assert sorted(int(h["source_offset"]) for h in dead) == [10, 11, 12, 13, 14]
    assert all(h["error"] and h["consumer"] == "projector" and h["source_partition"] == "0" for h in dead)
    assert sorted(h["kind"] for h in dead) == ["undecodable"] * 2 + ["unprojectable"] * 3
