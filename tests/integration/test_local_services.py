"""The real local Kafka + PostgreSQL started by ``scalebox local up`` (no mocks)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pipeline import free_port, scalebox
from support.homes import share_kafka_jars

from scalebox_stream.kafka.config import admin_config, producer_config, secured
from scalebox_stream.kafka.security import client_security
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.local import services

pytestmark = pytest.mark.integration


def _client(bootstrap: str, home: Path) -> dict[str, object]:
    """A client of the pair in `home` (not this process's home): that home's credentials."""
    return {"bootstrap.servers": bootstrap, **client_security(bootstrap, {"SCALEBOX_HOME": str(home)})}


def test_up_twice_returns_same_endpoints_and_broker_answers(local_endpoints: services.Endpoints) -> None:
    first = services.up()
    second = services.up()
    assert first == second == local_endpoints
    metadata = AdminClient(admin_config(first.kafka_bootstrap)).list_topics(timeout=10)
    assert list(metadata.brokers) == [1]


def test_produce_consume_round_trip(local_endpoints: services.Endpoints) -> None:
    bootstrap = local_endpoints.kafka_bootstrap
    topic = f"test-local-{uuid.uuid4().hex[:12]}"
    admin = AdminClient(admin_config(bootstrap))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    try:
        producer = Producer(producer_config(bootstrap))
        sent = [f"message-{i}".encode() for i in range(3)]
        for value in sent:
            producer.produce(topic, value=value, key=b"k")
        assert producer.flush(30) == 0

        consumer = Consumer(secured({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                                     "auto.offset.reset": "earliest"}))
        consumer.subscribe([topic])
        received: list[bytes] = []
        try:
            for _ in range(60):
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    received.append(msg.value())
                if len(received) == len(sent):
                    break
        finally:
            consumer.close()
        assert received == sent
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_postgres_select_one(local_endpoints: services.Endpoints) -> None:
    with psycopg.connect(local_endpoints.pg_dsn, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("scalebox",)


def test_status_reports_both_running(local_endpoints: services.Endpoints) -> None:
    info = services.status()
    assert info["kafka"]["running"] and info["postgres"]["running"]
    assert info["kafka"]["bootstrap"] == local_endpoints.kafka_bootstrap
    assert info["postgres"]["dsn"] == local_endpoints.pg_dsn
    assert info["kafka"]["pid"] > 0 and info["postgres"]["pid"] > 0


def test_reset_leaves_both_services_empty(tmp_path, kafka_bootstrap, pg_dsn) -> None:
    """A second pair in its own home: reset stops it and deletes its data; the next `up` starts it empty, and
    a projector there has nothing to catch up with."""
    home, topic = share_kafka_jars(tmp_path / "home"), f"test-local-{uuid.uuid4().hex[:12]}"
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()), "--pg-port", str(free_port()),
             "--internal-port", str(free_port())]
    up = scalebox(["local", "up", *ports], kafka_bootstrap, pg_dsn, home=home)
    assert up.code == 0, up.stderr
    try:
        bootstrap, dsn = (line.split()[-1] for line in up.stdout.splitlines()[:2])
        admin = AdminClient(_client(bootstrap, home))
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept_until_reset (x int)")

        reset = scalebox(["local", "reset", "--yes"], kafka_bootstrap, pg_dsn, home=home)
        assert reset.code == 0, reset.stderr
        assert reset.stdout.splitlines() == ["kafka: stopped, data deleted", "postgres: stopped, data deleted"]
        assert not (home / "kafka" / "data").exists() and not (home / "postgres").exists()
        assert (home / "kafka" / "lib").is_dir(), "the jars stay"

        again = scalebox(["local", "up"], kafka_bootstrap, pg_dsn, home=home)  # the ports are remembered
        assert again.code == 0, again.stderr
        assert again.stdout.splitlines()[:2] == up.stdout.splitlines()[:2]
        assert topic not in AdminClient(_client(bootstrap, home)).list_topics(timeout=30).topics
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT to_regclass('kept_until_reset')").fetchone() == (None,)

        # A projector on an empty broker (no app deployed yet) catches up at once instead of waiting forever
        # for an events topic nobody creates.
        caught_up = scalebox(["projector", "--until-caught-up"], bootstrap, dsn, home=home, timeout=120)
        assert caught_up.code == 0, caught_up.stderr
        assert "projected 0 event(s)" in caught_up.stderr
        assert EVENTS_TOPIC in AdminClient(_client(bootstrap, home)).list_topics(timeout=30).topics
    finally:
        scalebox(["local", "down"], kafka_bootstrap, pg_dsn, home=home)
