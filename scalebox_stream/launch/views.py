"""Reading the task perspective for the CLI: apps, module status, tasks, one task's attempts and lineage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from scalebox_stream.launch.errors import OperationError
from scalebox_stream.policy.display import SHORT_ID, PrefixError, id_prefix, prefix_range, resolve_prefix, short_ids
from scalebox_stream.projector import queries

TIMINGS = ("queue_wait", "run_time")
PERCENTILES = ("p50", "p95", "p99")


def with_timings(rows: list[dict], timings: dict[tuple[str, str], dict]) -> list[dict]:
    """Rows with `queue_wait` and `run_time` percentile maps (seconds) added."""
    for r in rows:
        t = timings.get((r["app"], r["module"]), {})
        for name in TIMINGS:
            values = t.get(name) or [None] * len(PERCENTILES)
            r[name] = dict(zip(PERCENTILES, values, strict=True))
    return rows


def list_apps(pg: str) -> list[dict]:
    """Deployed apps with their modules and task counts."""
    with psycopg.connect(pg) as conn:
        return queries.list_apps(conn)


RECENT_S = 3600.0
"""`scalebox status` without --app or --all shows the apps not finished and those finished this long ago or less."""


@dataclass(frozen=True)
class StatusView:
    """Per-module rows, and how many apps finished earlier are left out of them."""

    rows: list[dict]
    hidden_apps: int


def status_view(pg: str, app: str | None, every_app: bool = False, now: datetime | None = None) -> StatusView:
    """Per module: task counts, queue-wait and run-time percentiles, of `app`; without it, of every app
    (`every_app`) or only of those not finished or finished within RECENT_S, so that the time taken does not
    grow with the apps that finished before."""
    with psycopg.connect(pg) as conn:
        if app is not None or every_app:
            return StatusView(with_timings(queries.module_status(conn, app), queries.module_timings(conn, app)), 0)
        since = (now or datetime.now(UTC)) - timedelta(seconds=RECENT_S)
        apps = queries.shown_apps(conn, since)
        rows = queries.module_status(conn, apps=apps)
        return StatusView(with_timings(rows, queries.module_timings(conn, apps=apps)),
                          queries.finished_before(conn, since))


def list_tasks(pg: str, app: str | None, module: str | None, status: str | None, host: str | None,
               since: datetime | None, limit: int | None) -> list[dict]:
    """Tasks with their status, exit code, attempts, host and custom output."""
    with psycopg.connect(pg) as conn:
        return queries.list_tasks(conn, app, module, status, host, since, limit)


@dataclass(frozen=True)
class TaskDetail:
    """A task, every attempt of it, and its descendants (each with the `edge_parent` it hangs from)."""

    task: dict
    attempts: list[dict]
    descendants: list[dict]
    ancestors: list[dict]

    @property
    def children(self) -> list[str]:
        """The ids of the task's direct children."""
        return [d["task_id"] for d in self.descendants if d["edge_parent"] == self.task["task_id"]]


def short_task_ids(pg: str, ids: list[str]) -> dict[str, str]:
    """Each id's shortest prefix (8 characters at least) that names it alone among every projected task, so
    that it can be typed back to `task show`."""
    if not ids:
        return {}
    with psycopg.connect(pg) as conn:
        near = queries.task_ids_in(conn, [prefix_range(i[:SHORT_ID]) for i in set(ids)])
    return short_ids(ids, near)


def resolve_task_id(conn: psycopg.Connection, typed: str) -> str:
    """The full id of the task a typed id or unique prefix names; OperationError (exit 2) if none does or
    several do, listing them."""
    try:
        return resolve_prefix(typed, queries.task_ids_in(conn, [prefix_range(id_prefix(typed))], limit=6))
    except PrefixError as exc:
        raise OperationError(str(exc)) from None


def _task(conn: psycopg.Connection, task_id: str) -> dict:
    task = queries.find_task(conn, resolve_task_id(conn, task_id))
    if task is None:
        raise OperationError(f"no task {task_id!r}")
    return task


def task_detail(pg: str, task_id: str) -> TaskDetail:
    """A task (by id or unique prefix) with its attempts and descendants."""
    with psycopg.connect(pg) as conn:
        task = _task(conn, task_id)
        return TaskDetail(task, queries.attempts_of(conn, task["task_id"]), queries.descendants(conn, task["task_id"]),
                          [])


def task_lineage(pg: str, task_id: str) -> TaskDetail:
    """A task (by id or unique prefix) with its ancestors (root first) and descendants."""
    with psycopg.connect(pg) as conn:
        task = _task(conn, task_id)
        return TaskDetail(task, [], queries.descendants(conn, task["task_id"]),
                          queries.ancestors(conn, task["task_id"]))
