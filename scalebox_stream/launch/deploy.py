"""Deploying an app: topics, the projection schema, the app registry record and an AppDeployed event."""

from __future__ import annotations

from pathlib import Path

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from scalebox_stream.events import AppDeployed, EventCodec, EventStamp
from scalebox_stream.kafka.app_registry import AppRecord, publish_app
from scalebox_stream.kafka.config import admin_config, producer_config
from scalebox_stream.kafka.task_publisher import flush_or_fail
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics
from scalebox_stream.projector.migrate import migrate
from scalebox_stream.spec.model import AppSpec


def deploy(spec: AppSpec, env_files: tuple[Path, ...], kafka: str, pg: str) -> None:
    """Make the app runnable: idempotent, safe to repeat before every run."""
    ensure_app_topics(AdminClient(admin_config(kafka)), spec.name, list(spec.modules))
    with psycopg.connect(pg, autocommit=True) as conn:
        migrate(conn)
    producer = Producer(producer_config(kafka))
    publish_app(producer, AppRecord(spec.name, spec.source.resolve(), tuple(p.resolve() for p in env_files)))
    event = EventStamp.for_cli(spec.name).event(AppDeployed(modules=list(spec.modules),
                                                           spec_yaml=spec.source.read_text(),
                                                           source=str(spec.source.resolve())))
    producer.produce(EVENTS_TOPIC, key=spec.name, value=EventCodec().encode(event))
    flush_or_fail(producer)
