"""The projector's loop over in-memory Kafka and PostgreSQL edges: building one does no I/O; `run` applies
every batch with its positions, dead-letters poison, resumes from the stored positions, settles the batch
in flight before a rebalance, and after a database outage reconnects and rewinds."""

from __future__ import annotations

import psycopg
from fakes.projector_db import FakeServer
from fakes.projector_kafka import FakeConsumer, FakeProducer
from support.workload import generate

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.projector.service import Projector, ProjectorSettings

TOPIC = "sbx.test.service"
CODEC = EventCodec()
FAST = ProjectorSettings(batch_size=25, reconnect_delay_s=0.001, outage_pause_s=0, poll_timeout_s=0)


class Edges:
    """The Kafka clients and the database a projector is handed, kept for the test to look at."""

    def __init__(self, logs: dict[int, list[bytes]], server: FakeServer | None = None) -> None:
        self.logs, self.server = logs, server or FakeServer()
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []

    def consumer(self, config: dict) -> FakeConsumer:
        self.consumers.append(FakeConsumer(config, self.logs))
        return self.consumers[-1]

    def producer(self, config: dict) -> FakeProducer:
        self.producers.append(FakeProducer(config))
        return self.producers[-1]

    def projector(self, settings: ProjectorSettings = FAST) -> Projector:
        return Projector("kafka:9092", "postgresql://fake", settings, topic=TOPIC, consumer_factory=self.consumer,
                         producer_factory=self.producer, connect=self.server.connect)


def _events(n: int, seed: int = 5) -> list[Event]:
    return list(generate(n, app="service", seed=seed))


def _logs(events: list[Event], partitions: int = 2) -> dict[int, list[bytes]]:
    logs: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for e in events:
        logs[hash(e.task_id or e.app) % partitions].append(CODEC.encode(e))
    return logs


def test_building_a_projector_does_no_io():
    edges = Edges({0: []})
    edges.server.down = True
    projector = edges.projector()
    assert edges.consumers == [] and edges.producers == [] and edges.server.connections == []
    assert projector.conn is None


def test_start_connects_migrates_and_subscribes_with_the_settings():
    edges = Edges({0: []})
    projector = edges.projector(ProjectorSettings(batch_wait_ms=0, heartbeat_interval_ms=123))
    assert projector.start() and projector.start()
    (consumer,) = edges.consumers
    assert consumer.calls == [("subscribe", (TOPIC,))]
    assert consumer.config["heartbeat.interval.ms"] == 123 and "fetch.min.bytes" not in consumer.config
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS schema_migrations") for s in edges.server.statements)
    assert projector.conn is edges.server.connections[0]


def test_the_batch_wait_is_handed_to_the_broker():
    settings = ProjectorSettings()
    assert settings.consumer_overrides()["fetch.wait.max.ms"] == 100
    assert settings.consumer_overrides()["fetch.min.bytes"] == 1 << 20


def test_run_projects_every_event_with_its_positions_and_dead_letters_the_poison():
    events = _events(400)
    logs = _logs(events)
    logs[1][3:3] = [b"not an event"]
    edges = Edges(logs)
    culprit = next(e.task_id for e in events if e.event_type == "TaskAccepted" and e.module == "calc")
    edges.server.refuse_task(culprit)
    stats = edges.projector().run(until_caught_up=True, install_signals=False)
    dead = [CODEC.decode(p["value"]) for p in edges.producers[0].produced if p["value"] != b"not an event"]
    assert {e.event_id for e in events if e.task_id == culprit} <= {e.event_id for e in dead}
    assert all(e.task_id == culprit or culprit in str(e.payload) for e in dead)  # its parent's placeholder too
    assert stats.events == len(events) + 1
    assert stats.dead_letters == 1 + len(dead)
    assert stats.applied == len(events) - len(dead)
    assert edges.server.state.applied == {e.event_id for e in events} - {e.event_id for e in dead}
    assert stats.batches >= len(events) // FAST.batch_size and stats.rate() > 0
    assert edges.server.offsets_of(TOPIC) == {p: len(log) for p, log in logs.items()}
    assert len(edges.producers[0].produced) == stats.dead_letters
    assert edges.consumers[0].closed and edges.server.connections[-1].closed


def test_a_second_projector_resumes_at_the_stored_positions():
    events = _events(200)
    edges = Edges(_logs(events))
    edges.projector().run(until_caught_up=True, install_signals=False)
    more = _events(100, seed=9)
    for p, values in _logs(more).items():
        edges.logs[p].extend(values)
    stats = edges.projector().run(until_caught_up=True, install_signals=False)
    assert stats.events == len(more) and stats.applied == len(more)
    assert edges.server.state.applied == {e.event_id for e in events + more}


def test_a_replayed_log_is_applied_once():
    events = _events(150)
    edges = Edges(_logs(events))
    edges.projector().run(until_caught_up=True, install_signals=False)
    edges.server.state.offsets.clear()  # positions lost: the whole log comes again
    stats = edges.projector().run(until_caught_up=True, install_signals=False)
    assert stats.events == len(events) and stats.applied == 0 and stats.duplicates == len(events)
    assert stats.dead_letters == 0


def test_the_batch_in_flight_is_settled_before_a_rebalance():
    edges = Edges(_logs(_events(100), partitions=1))
    projector = edges.projector()
    assert projector.start()
    projector.step()
    assert projector._in_flight is not None, "the first batch is sent, not waited for"
    edges.consumers[0].revoke_all()
    assert projector._in_flight is None and projector.stats.batches == 1
    assert projector.offsets.assigned == [] and edges.server.offsets_of(TOPIC) == {0: FAST.batch_size}


def test_a_database_outage_is_waited_out_then_the_projector_reconnects_and_rewinds():
    events = _events(300)
    edges = Edges(_logs(events))
    server = edges.server
    commits = {"n": 0}

    def crash_on_third_commit(sql: str, row: object) -> Exception | None:
        if sql == "COMMIT":
            commits["n"] += 1
            if commits["n"] == 3:
                server.crash()
                return psycopg.OperationalError("server closed the connection unexpectedly")
        return None
    server.rules.append(crash_on_third_commit)
    real_connect = server.connect
    refused = {"n": 0}

    def connect(dsn: str = "", **kwargs: object):
        if server.down:
            refused["n"] += 1
            if refused["n"] >= 3:
                server.down = False  # back after a few attempts
        return real_connect(dsn, **kwargs)
    edges.server.connect = connect  # type: ignore[method-assign]
    stats = edges.projector().run(until_caught_up=True, install_signals=False)
    assert stats.db_reconnects >= 1 and refused["n"] >= 1
    assert server.state.applied == {e.event_id for e in events}
    assert stats.applied == len(events) and stats.dead_letters == 0
    assert server.offsets_of(TOPIC) == {p: len(log) for p, log in edges.logs.items()}


def test_partitions_assigned_while_the_database_is_down_wait_paused_for_it():
    events = _events(60)
    edges = Edges(_logs(events))
    projector = edges.projector()
    assert projector.start()
    edges.server.crash()
    edges.server.down = False  # the old connection is broken; a new one works
    projector.step()
    consumer = edges.consumers[0]
    assert ("pause", (0, 1)) in consumer.calls and projector.stats.batches == 0
    stats = projector.run(until_caught_up=True, install_signals=False)
    assert stats.db_reconnects == 1 and stats.applied == len(events)


def test_a_stop_ends_the_run_and_closes_everything():
    edges = Edges({0: []})
    projector = edges.projector()
    projector.request_stop()
    stats = projector.run(install_signals=False)
    assert stats.batches == 0
    assert edges.consumers[0].closed and edges.producers[0].flushes == 1


def test_a_stop_while_waiting_for_the_database_at_start():
    edges = Edges({0: []})
    edges.server.down = True
    projector = edges.projector(ProjectorSettings(reconnect_delay_s=0.001))
    projector.request_stop()
    assert projector.run(install_signals=False).batches == 0
    assert edges.consumers[0].closed


def test_a_group_builds_each_projector_from_one_config_without_io():
    from scalebox_stream.projector.group import ProjectorConfig, _projector

    settings = ProjectorSettings(batch_size=7)
    projector = _projector(ProjectorConfig("kafka:9092", "postgresql://nowhere", settings, topic=TOPIC,
                                           metrics_port=9400), 2)
    assert (projector.settings, projector.topic, projector.metrics_port) == (settings, TOPIC, 9402)
    assert projector.conn is None and projector.consumer is None
