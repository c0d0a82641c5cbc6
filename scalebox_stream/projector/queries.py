"""Read-side queries over the task perspective (used by the CLI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

TERMINAL = ("succeeded", "failed")
WAITING = ("created", "retrying")
RUNNING = ("accepted", "running")

_TASK_COLUMNS = """t.task_id::text AS task_id, t.app, t.module, t.body, t.status, t.exit_code, t.attempts,
    t.host, t.custom_out, t.parent_task_id::text AS parent_task_id, t.created_at, t.finished_at"""


def list_tasks(conn: psycopg.Connection, app: str | None = None, module: str | None = None,
               status: str | None = None, host: str | None = None, since: datetime | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Tasks matching every filter given, oldest first."""
    where, params = [], []
    for column, value in (("t.app", app), ("t.module", module), ("t.status", status), ("t.host", host)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("t.created_at >= %s")
        params.append(since)
    sql = f"SELECT {_TASK_COLUMNS} FROM tasks t"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY t.created_at NULLS LAST, t.task_id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def module_status(conn: psycopg.Connection, app: str | None = None) -> list[dict[str, Any]]:
    """Per app and module: tasks created, waiting, running, succeeded, failed; attempts."""
    sql = """SELECT app, module, count(*) AS created,
                    count(*) FILTER (WHERE status = ANY(%(waiting)s)) AS waiting,
                    count(*) FILTER (WHERE status = ANY(%(running)s)) AS running,
                    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                    count(*) FILTER (WHERE status = 'failed') AS failed,
                    coalesce(sum(attempts), 0) AS attempts
             FROM tasks WHERE (%(app)s::text IS NULL OR app = %(app)s) GROUP BY app, module ORDER BY app, module"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, {"app": app, "waiting": list(WAITING), "running": list(RUNNING)}).fetchall()


def run_progress(conn: psycopg.Connection, roots: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Per-module counts over the tasks descending from `roots`, and how many roots are not projected yet."""
    sql = """WITH RECURSIVE run(task_id) AS (
                 SELECT unnest(%(roots)s::uuid[])
                 UNION
                 SELECT e.child_task_id FROM task_edges e JOIN run r ON e.parent_task_id = r.task_id)
             SELECT t.module, count(*) AS created,
                    count(*) FILTER (WHERE t.status = ANY(%(waiting)s)) AS waiting,
                    count(*) FILTER (WHERE t.status = ANY(%(running)s)) AS running,
                    count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
                    count(*) FILTER (WHERE t.status = 'failed') AS failed,
                    coalesce(sum(t.attempts), 0) AS attempts
             FROM run JOIN tasks t USING (task_id) GROUP BY t.module ORDER BY t.module"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {"roots": roots, "waiting": list(WAITING), "running": list(RUNNING)}).fetchall()
        found = cur.execute("SELECT count(*) AS n FROM tasks WHERE task_id = ANY(%s::uuid[])", (roots,)).fetchone()
    return rows, len(roots) - found["n"]


def task_runs(conn: psycopg.Connection, task_id: str) -> list[dict[str, Any]]:
    """Every attempt of one task, first to last."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM task_runs WHERE task_id = %s ORDER BY attempt", (task_id,)).fetchall()
