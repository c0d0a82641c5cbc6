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
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics, task_topic
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.projector.migrate import migrate
from scalebox_stream.spec.model import AppSpec
from scalebox_stream.spec.names import colliding_topics

TASK_TOPICS_PREFIX = "sbx.tasks."


def topic_clash(spec: AppSpec, existing: list[str]) -> str | None:
    """Why the app's task topics cannot be created next to the `existing` topics (Kafka reads '.' and '_' in
    topic names alike, so app `a_b` module `c` and app `a` module `b_c` would share one), or None."""
    ours = [task_topic(spec.name, module) for module in spec.modules]
    clashes = colliding_topics(ours, [t for t in existing if t.startswith(TASK_TOPICS_PREFIX)])
    if not clashes:
        return None
    listed = ", ".join(f"{new} with {old}" for new, old in clashes)
    return (f"app {spec.name!r} cannot be deployed: its topic names collide with those of a deployed app "
            f"({listed}); Kafka treats '.' and '_' in topic names alike: rename the app or the module")


def deploy(spec: AppSpec, env_files: tuple[Path, ...], kafka: str, pg: str) -> None:
    """Make the app runnable: idempotent, safe to repeat before every run. Refuses (OperationError, exit 2)
    before creating anything if its task topics would collide with another app's."""
    admin = AdminClient(admin_config(kafka))
    if problem := topic_clash(spec, list(admin.list_topics(timeout=30).topics)):
        raise OperationError(problem, code=2)
    ensure_app_topics(admin, spec.name, list(spec.modules))
    with psycopg.connect(pg, autocommit=True) as conn:
        migrate(conn)
    producer = Producer(producer_config(kafka))
    publish_app(producer, AppRecord(spec.name, spec.source.resolve(), tuple(p.resolve() for p in env_files)))
    event = EventStamp.for_cli(spec.name).event(AppDeployed(modules=list(spec.modules),
                                                           spec_yaml=spec.source.read_text(),
                                                           source=str(spec.source.resolve())))
    producer.produce(EVENTS_TOPIC, key=spec.name, value=EventCodec().encode(event))
    flush_or_fail(producer)
