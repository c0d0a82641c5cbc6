"""`scalebox app clean`: a finished app's task topics and consumer groups go; other apps' and the records stay."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import scalebox

from scalebox_stream.kafka.config import admin_config, secured
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics, ensure_topics, module_group, task_topic


def _groups(admin: AdminClient) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid}


def _join(bootstrap: str, group: str, topic: str) -> Consumer:
    """A member of `group` that holds an assignment and has committed a position."""
    consumer = Consumer(secured({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                                 "enable.auto.commit": False}))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the consumer never got partitions"
    consumer.commit(offsets=[TopicPartition(tp.topic, tp.partition, 0) for tp in consumer.assignment()],
                    asynchronous=False)
    return consumer


def test_clean_deletes_only_the_apps_topics_and_groups(kafka_bootstrap, pg_dsn):
    app = f"clean-{uuid.uuid4().hex[:8]}"
    neighbours = [f"{app}2", f"{app}.m"]  # names that start like the app's but belong to other apps
    admin = AdminClient(admin_config(kafka_bootstrap))
    ensure_app_topics(admin, app, ["a", "b"])
    ensure_topics(admin, {task_topic(app, "b", "h1"): 2})
    for other in neighbours:
        ensure_app_topics(admin, other, ["n"])
    ours = {task_topic(app, "a"), task_topic(app, "b"), task_topic(app, "b", "h1")}
    theirs = {task_topic(other, "n") for other in neighbours}

    member = _join(kafka_bootstrap, module_group(app, "a"), task_topic(app, "a"))
    try:
        busy = scalebox(["app", "clean", app], kafka_bootstrap, pg_dsn)
        assert busy.code == 1
        assert "still run" in busy.stderr and module_group(app, "a") in busy.stderr
        assert ours <= set(admin.list_topics(timeout=30).topics), "a refused clean deleted topics"
    finally:
        member.close()
    other_member = _join(kafka_bootstrap, module_group(neighbours[1], "n"), task_topic(neighbours[1], "n"))
    other_member.close()

    listed = scalebox(["app", "clean", app, "--dry-run"], kafka_bootstrap, pg_dsn)
    assert listed.code == 0, listed.stderr
    assert {line.split()[1] for line in listed.stdout.splitlines() if line.startswith("topic ")} == ours
    assert ours <= set(admin.list_topics(timeout=30).topics), "a dry run deleted topics"

    done = scalebox(["app", "clean", app], kafka_bootstrap, pg_dsn)
    assert done.code == 0, done.stderr
    assert f"deleted 3 topics and 1 consumer groups of {app}" in done.stdout
    deadline = time.monotonic() + 30
    while ours & set(admin.list_topics(timeout=30).topics) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = set(admin.list_topics(timeout=30).topics)
    assert not ours & left
    assert theirs <= left and EVENTS_TOPIC in left
    groups = _groups(admin)
    assert module_group(app, "a") not in groups
    assert module_group(neighbours[1], "n") in groups

    again = scalebox(["app", "clean", app], kafka_bootstrap, pg_dsn)
    assert again.code == 1 and "has no task topics" in again.stderr
