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


def module_status(conn: psycopg.Connection, app: str | None = None,
                  apps: list[str] | None = None) -> list[dict[str, Any]]:
    """Per app and module: tasks created, waiting, running, succeeded, failed; attempts (of `app`, else of
    `apps` if given, else of every app)."""
    if app is None and apps is not None:
        return _status(conn, "t.app = ANY(%(apps)s)", {"apps": apps})
    return _status(conn, "(%(app)s::text IS NULL OR t.app = %(app)s)", {"app": app})


def _status(conn: psycopg.Connection, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    sql = f"""SELECT t.app, t.module, count(*) AS created,
                    count(*) FILTER (WHERE t.status = ANY(%(waiting)s)) AS waiting,
                    count(*) FILTER (WHERE t.status = ANY(%(running)s)) AS running,
                    count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
                    count(*) FILTER (WHERE t.status = 'failed') AS failed,
                    coalesce(sum(t.attempts), 0) AS attempts,
                    coalesce(max(m.state), 'active') AS state, coalesce(max(m.reason), '') AS state_reason
             FROM tasks t LEFT JOIN module_states m ON m.app = t.app AND m.module = t.module
             WHERE {where} GROUP BY t.app, t.module ORDER BY t.app, t.module"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, {**params, "waiting": list(WAITING), "running": list(RUNNING)}).fetchall()


def shown_apps(conn: psycopg.Connection, finished_since: datetime) -> list[str]:
    """The apps not finished, or finished at `finished_since` or later. `scalebox status` counts only their
    tasks (through the tasks_app_module index), so its time does not grow with the apps finished before."""
    rows = conn.execute("SELECT app FROM apps WHERE finished_at IS NULL OR finished_at >= %s ORDER BY app",
                        (finished_since,)).fetchall()
    return [r[0] for r in rows]


def finished_before(conn: psycopg.Connection, finished_since: datetime) -> int:
    """How many apps finished before `finished_since` (those `shown_apps` leaves out)."""
    return conn.execute("SELECT count(*) FROM apps WHERE finished_at < %s", (finished_since,)).fetchone()[0]


def run_progress(conn: psycopg.Connection, roots: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Per-module counts over the tasks descending from `roots`, and how many roots are not projected yet.

    One statement, so both come from one snapshot: with two, roots projected in between counted as seen but not
    in the counts, and a run whose first roots had ended looked finished before the others ran."""
    sql = """WITH RECURSIVE run(task_id) AS (
                 SELECT unnest(%(roots)s::uuid[])
                 UNION
                 SELECT e.child_task_id FROM task_edges e JOIN run r ON e.parent_task_id = r.task_id),
             seen AS (SELECT count(*) AS seen_roots FROM tasks WHERE task_id = ANY(%(roots)s::uuid[])),
             counts AS (
                 SELECT t.module, count(*) AS created,
                        count(*) FILTER (WHERE t.status = ANY(%(waiting)s)) AS waiting,
                        count(*) FILTER (WHERE t.status = ANY(%(running)s)) AS running,
                        count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
                        count(*) FILTER (WHERE t.status = 'failed') AS failed,
                        coalesce(sum(t.attempts), 0) AS attempts
                 FROM run JOIN tasks t USING (task_id) GROUP BY t.module)
             SELECT seen.seen_roots, counts.* FROM seen LEFT JOIN counts ON true ORDER BY counts.module"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {"roots": roots, "waiting": list(WAITING), "running": list(RUNNING)}).fetchall()
    seen = rows[0]["seen_roots"]  # `seen` has one row: at least one row comes back
    modules = [{k: v for k, v in row.items() if k != "seen_roots"} for row in rows if row["module"] is not None]
    return modules, len(roots) - seen


def task_runs(conn: psycopg.Connection, task_id: str) -> list[dict[str, Any]]:
    """Every attempt of one task, first to last."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM task_runs WHERE task_id = %s ORDER BY attempt", (task_id,)).fetchall()


_DERIVED = """extract(epoch FROM (r.started_at - r.created_at))::float8 AS queue_wait_s,
    extract(epoch FROM (r.finished_at - r.started_at))::float8 AS run_s,
    extract(epoch FROM (r.finished_at - r.created_at))::float8 AS end_to_end_s"""


def find_task(conn: psycopg.Connection, prefix: str) -> dict[str, Any] | None:
    """A task by id or unambiguous id prefix (at least 6 characters)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_TASK_COLUMNS}, t.headers FROM tasks t WHERE t.task_id::text LIKE %s LIMIT 2",
                           (prefix.lower() + "%",)).fetchall()
    return rows[0] if len(rows) == 1 else None


def task_ids_in(conn: psycopg.Connection, ranges: list[tuple[str, str]], limit: int | None = None) -> list[str]:
    """The ids of the tasks within any of the (lowest, highest) uuid ranges, in order (at most `limit`)."""
    sql = """SELECT DISTINCT t.task_id::text FROM unnest(%s::uuid[], %s::uuid[]) AS r(lo, hi)
             JOIN tasks t ON t.task_id BETWEEN r.lo AND r.hi ORDER BY 1"""
    if limit:
        sql += f" LIMIT {int(limit)}"
    with conn.cursor() as cur:
        return [row[0] for row in cur.execute(sql, ([lo for lo, _ in ranges], [hi for _, hi in ranges])).fetchall()]


def attempts_of(conn: psycopg.Connection, task_id: str) -> list[dict[str, Any]]:
    """Every attempt of one task with every recorded field and the derived durations, first to last."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT r.*, {_DERIVED} FROM task_runs r WHERE r.task_id = %s ORDER BY r.attempt",
                           (task_id,)).fetchall()


def ancestors(conn: psycopg.Connection, task_id: str) -> list[dict[str, Any]]:
    """The chain of parents of a task, root first (the task itself excluded)."""
    sql = f"""WITH RECURSIVE up(task_id, depth) AS (
                  SELECT parent_task_id, 1 FROM tasks WHERE task_id = %s AND parent_task_id IS NOT NULL
                  UNION ALL
                  SELECT t.parent_task_id, up.depth + 1 FROM up JOIN tasks t ON t.task_id = up.task_id
                  WHERE t.parent_task_id IS NOT NULL AND up.depth < 1000)
              SELECT {_TASK_COLUMNS} FROM up JOIN tasks t ON t.task_id = up.task_id ORDER BY up.depth DESC"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (task_id,)).fetchall()


def descendants(conn: psycopg.Connection, task_id: str) -> list[dict[str, Any]]:
    """Every task emitted (transitively) from a task, with its parent id, in emission order."""
    sql = f"""WITH RECURSIVE down(task_id, parent, position, depth) AS (
                  SELECT child_task_id, parent_task_id, position, 1 FROM task_edges WHERE parent_task_id = %s
                  UNION ALL
                  SELECT e.child_task_id, e.parent_task_id, e.position, d.depth + 1
                  FROM task_edges e JOIN down d ON e.parent_task_id = d.task_id WHERE d.depth < 1000)
              SELECT {_TASK_COLUMNS}, down.parent::text AS edge_parent, down.position
              FROM down JOIN tasks t ON t.task_id = down.task_id ORDER BY down.depth, down.position"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (task_id,)).fetchall()


def list_apps(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Deployed apps with their task counts."""
    sql = """SELECT a.app, a.modules, a.source, a.deployed_at, a.finished_at,
                    count(t.task_id) AS tasks,
                    count(t.task_id) FILTER (WHERE t.status = 'succeeded') AS succeeded,
                    count(t.task_id) FILTER (WHERE t.status = 'failed') AS failed,
                    count(t.task_id) FILTER (WHERE t.status <> ALL(%s)) AS in_flight
             FROM apps a LEFT JOIN tasks t ON t.app = a.app
             GROUP BY a.app ORDER BY a.deployed_at DESC NULLS LAST"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (list(TERMINAL),)).fetchall()


def module_timings(conn: psycopg.Connection, app: str | None = None,
                   apps: list[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Per app and module: p50/p95/p99 of attempt queue wait and run time, in seconds (of `app`, else of
    `apps` if given, else of every app)."""
    sql = """SELECT app, module,
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM (started_at - created_at))::float8) AS queue_wait,
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM (finished_at - started_at))::float8) AS run_time
             FROM task_runs WHERE (%(app)s::text IS NULL OR app = %(app)s)
                 AND (%(apps)s::text[] IS NULL OR app = ANY(%(apps)s)) AND status_rank = 3
             GROUP BY app, module"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {"app": app, "apps": apps}).fetchall()
    return {(r["app"], r["module"]): r for r in rows}
