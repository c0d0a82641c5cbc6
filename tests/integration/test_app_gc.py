"""Finished apps' task topics and consumer groups go after the retention period (at once with 0, from
`scalebox run` itself); the projection keeps their tasks, and `scalebox status` leaves out apps finished long
ago."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
from confluent_kafka.admin import AdminClient
from pipeline import list_tasks, scalebox

from scalebox_stream.kafka.config import admin_config
from scalebox_stream.kafka.topics import module_group, task_topic

EMIT = json.dumps('printf "%s\\n" "$0" > "$WORK_DIR/sink-tasks.txt"')
"""The first module passes its body on to the second."""


def _app(name: str) -> str:
    return (f"name: {name}\nmodules:\n"
            f"  first:\n    executor: process\n    command: [/bin/sh, -c, {EMIT}]\n    sink_modules: [second]\n"
            f"  second:\n    executor: process\n    command: [/bin/true]\n")


def _run(tmp_path, app: str, kafka: str, pg: str, monkeypatch, retention: str) -> str:
    (tmp_path / f"{app}.yaml").write_text(_app(app))
    monkeypatch.setenv("SCALEBOX_APP_RETENTION_S", retention)
    result = scalebox(["run", str(tmp_path / f"{app}.yaml"), "1", "2", "3"], kafka, pg)
    assert result.code == 0, result.stderr
    return result.stderr  # what `scalebox run` says goes to stderr


def _left(admin: AdminClient, app: str) -> tuple[set[str], set[str]]:
    topics = {t for t in admin.list_topics(timeout=30).topics if t.startswith(task_topic(app, ""))}
    groups = {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid
              if g.group_id.startswith(module_group(app, ""))}
    return topics, groups


def _succeeded(kafka: str, pg: str, app: str) -> dict[str, int]:
    tasks = list_tasks(kafka, pg, app)
    assert all(t["status"] == "succeeded" for t in tasks), tasks
    return {m: sum(t["module"] == m for t in tasks) for m in ("first", "second")}


def test_finished_apps_topics_go_after_the_retention_and_their_tasks_stay(tmp_path, kafka_bootstrap, pg_dsn,
                                                                          monkeypatch):
    admin = AdminClient(admin_config(kafka_bootstrap))
    kept, at_once = (f"gc-{uuid.uuid4().hex[:8]}" for _ in range(2))
    said = " ".join(_run(tmp_path, at_once, kafka_bootstrap, pg_dsn, monkeypatch, "0").split())
    assert "deleted" in said and "SCALEBOX_APP_RETENTION_S=0" in said, said
    assert _left(admin, at_once) == (set(), set()), "retention 0: the run's own topics and groups go at its end"

    _run(tmp_path, kept, kafka_bootstrap, pg_dsn, monkeypatch, "3600")
    topics, groups = _left(admin, kept)  # a topic per module, and one per module for the agents' host
    assert {task_topic(kept, "first"), task_topic(kept, "second")} <= topics, "kept for the retention period"
    assert all(t.startswith((task_topic(kept, "first"), task_topic(kept, "second"))) for t in topics)
    assert groups == {module_group(kept, "first"), module_group(kept, "second")}

    caught_up = scalebox(["projector", "--until-caught-up"], kafka_bootstrap, pg_dsn)  # the runs' AppFinished
    assert caught_up.code == 0, caught_up.stderr
    within = scalebox(["app", "gc", "--retention", "3600", "--dry-run"], kafka_bootstrap, pg_dsn)
    assert within.code == 0, within.stderr
    assert kept not in within.stdout
    assert _left(admin, kept)[0], "an app finished within the retention period keeps its topics"
    time.sleep(2)
    gone = scalebox(["app", "gc", "--retention", "1"], kafka_bootstrap, pg_dsn)
    assert gone.code == 0, gone.stderr
    assert f"{kept}: {len(topics)} topics, 2 consumer groups" in gone.stdout
    assert _left(admin, kept) == (set(), set())

    assert _succeeded(kafka_bootstrap, pg_dsn, kept) == {"first": 3, "second": 3}, "the projection keeps the tasks"
    assert _succeeded(kafka_bootstrap, pg_dsn, at_once) == {"first": 3, "second": 3}

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as if `kept` had finished two hours ago
        conn.execute("UPDATE apps SET finished_at = finished_at - interval '2 hours' WHERE app = %s", (kept,))
    recent = scalebox(["status", "--json"], kafka_bootstrap, pg_dsn)
    assert recent.code == 0, recent.stderr
    shown = {r["app"] for r in json.loads(recent.stdout)}
    assert at_once in shown and kept not in shown
    every = scalebox(["status", "--json", "--all"], kafka_bootstrap, pg_dsn)
    assert {kept, at_once} <= {r["app"] for r in json.loads(every.stdout)}
    one = scalebox(["status", "--json", "--app", kept], kafka_bootstrap, pg_dsn)
    assert {(r["module"], r["succeeded"]) for r in json.loads(one.stdout)} == {("first", 3), ("second", 3)}
