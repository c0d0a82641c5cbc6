"""A task's events folded into PostgreSQL in any order give the row the log order gives.

A task published from outside (`task add`, `run`) has its TaskCreated on `sbx.events` from one producer and its
attempt's events from the agent's transaction, so the attempt can land first; the row must not stay `created`."""

from __future__ import annotations

import uuid

import psycopg
from support import verify

from scalebox_stream.events import Event
from scalebox_stream.projector import apply
from scalebox_stream.projector.migrate import migrate

_FINISHED_NONE = ("image", "container_id", "signal", "error", "message_text", "status_code", "input_bytes",
                  "output_bytes", "read_bytes", "write_bytes", "cpu_user_s", "cpu_system_s", "peak_memory_bytes")


def _event(kind: str, task: str, attempt: int, at: int, **payload) -> Event:
    return Event(kind, "order", payload, module="m", task_id=task, attempt=attempt, host="h", occurred_at=at)


def _attempt(task: str, attempt: int, at: int, exit_code: int) -> list[Event]:
    finished = dict.fromkeys(_FINISHED_NONE)
    finished.update(agent="a", slot=0, executor="process", outcome="succeeded" if exit_code == 0 else "failed",
                    exit_code=exit_code, timed_out=False, stdout="o", stderr="", custom_out=f"c{attempt}",
                    stdout_bytes=1, stderr_bytes=0, started_at=at, finished_at=at + 1, user_timestamps=[],
                    emitted_task_ids=[], emitted_modules=[])
    return [_event("TaskAccepted", task, attempt, at, agent="a", slot=0, topic="x", partition=0, offset=0),
            _event("TaskFinished", task, attempt, at + 1, **finished)]


def _created(task: str) -> Event:
    return _event("TaskCreated", task, 1, 1, body="the body", headers={"k": "v"}, parent_task_id=None,
                  not_before=None, topic="x")


def _rows(conn: psycopg.Connection, tasks: list[str]) -> list[tuple]:
    return conn.execute("SELECT task_id::text, body, headers, status, attempts, exit_code, created_at FROM tasks "
                        "WHERE task_id = ANY(%s::uuid[]) ORDER BY task_id", (tasks,)).fetchall()


def _project(dsn: str, batches: list[list[Event]], tasks: list[str]) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        apply.prepare_session(conn)
        for batch in batches:  # one projector transaction per batch, as the projector commits them
            with conn.transaction(), conn.cursor() as cur:
                apply.apply_events(cur, batch)
        return _rows(conn, tasks)


def test_an_attempt_projected_before_its_task_was_created_leaves_the_row_as_the_log_order_does(pg_dsn: str) -> None:
    ok, failed = str(uuid.uuid4()), str(uuid.uuid4())
    runs = [*_attempt(ok, 1, 10, 0), *_attempt(failed, 1, 10, 3)]
    created = [_created(ok), _created(failed)]
    results = []
    for order in ([created, runs], [runs, created]):
        name = f"order_{uuid.uuid4().hex[:8]}"
        dsn = verify.create_database(pg_dsn, name)
        try:
            results.append(_project(dsn, order, [ok, failed]))
        finally:
            verify.drop_database(pg_dsn, name)
    in_log_order, created_last = results
    assert created_last == in_log_order
    by_id = {row[0]: row for row in created_last}
    assert by_id[ok][1:6] == ("the body", {"k": "v"}, "succeeded", 1, 0)
    assert by_id[failed][1] == "the body" and by_id[failed][4:6] == (1, 3) and by_id[failed][6] is not None
