"""How each event type changes the task perspective: order-insensitive, rank-guarded upserts.

Events of one task arrive in order (they share a key), but a batch is applied grouped by event type,
and a child's placeholder row can come from its parent's report before its own TaskCreated. Every
statement is therefore monotonic: a row only moves forward in `status_rank`, so any application order of
the same set of events gives the same rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

import psycopg

from scalebox_stream.events import Event

TERMINAL_RANK = 10**12
STAGE = {"created": 0, "accepted": 1, "running": 2, "ended": 3, "retrying": 4}


def _ts(us: int | None) -> float | None:
    return None if us is None else us / 1e6


def task_rank(attempt: int, stage: str) -> int:
    """Monotonic rank of a task's status: later attempts outrank earlier ones; terminal beats all."""
    return max(attempt, 1) * 10 + STAGE[stage]


_TASK_UPSERT = """
INSERT INTO tasks (task_id, app, module, body, headers, parent_task_id, status, status_rank, attempts, created_at)
VALUES (%(task_id)s, %(app)s, %(module)s, %(body)s, %(headers)s, %(parent)s, %(status)s, %(rank)s, %(attempts)s,
        to_timestamp(%(created_at)s))
ON CONFLICT (task_id) DO UPDATE SET
    body = COALESCE(tasks.body, EXCLUDED.body),
    headers = CASE WHEN tasks.body IS NULL THEN EXCLUDED.headers ELSE tasks.headers END,
    parent_task_id = COALESCE(tasks.parent_task_id, EXCLUDED.parent_task_id),
    created_at = LEAST(tasks.created_at, EXCLUDED.created_at),
    status = CASE WHEN EXCLUDED.status_rank > tasks.status_rank THEN EXCLUDED.status ELSE tasks.status END,
    status_rank = GREATEST(tasks.status_rank, EXCLUDED.status_rank),
    attempts = GREATEST(tasks.attempts, EXCLUDED.attempts)
"""

_TASK_STATUS = """
UPDATE tasks SET status = %(status)s, status_rank = %(rank)s, attempts = GREATEST(attempts, %(attempts)s)
WHERE task_id = %(task_id)s AND status_rank < %(rank)s
"""

_TASK_RESULT = """
UPDATE tasks SET exit_code = %(exit_code)s, host = %(host)s, custom_out = %(custom_out)s,
       attempts = GREATEST(attempts, %(attempt)s)
WHERE task_id = %(task_id)s AND attempts <= %(attempt)s
"""

_TASK_TERMINAL = """
UPDATE tasks SET status = %(status)s, status_rank = %(rank)s, attempts = GREATEST(attempts, %(attempts)s),
       finished_at = to_timestamp(%(at)s)
WHERE task_id = %(task_id)s AND status_rank < %(rank)s
"""

_RUN_CREATED = """
INSERT INTO task_runs (task_id, attempt, app, module, status, status_rank, created_at)
VALUES (%(task_id)s, %(attempt)s, %(app)s, %(module)s, 'created', 0, to_timestamp(%(at)s))
ON CONFLICT (task_id, attempt) DO UPDATE SET created_at = EXCLUDED.created_at
"""

_RUN_ACCEPTED = """
INSERT INTO task_runs (task_id, attempt, app, module, cluster, host, slot, agent, status, status_rank, accepted_at)
VALUES (%(task_id)s, %(attempt)s, %(app)s, %(module)s, %(cluster)s, %(host)s, %(slot)s, %(agent)s, 'accepted', 1,
        to_timestamp(%(at)s))
ON CONFLICT (task_id, attempt) DO UPDATE SET
    cluster = EXCLUDED.cluster, host = EXCLUDED.host, slot = EXCLUDED.slot, agent = EXCLUDED.agent,
    accepted_at = EXCLUDED.accepted_at,
    status = CASE WHEN task_runs.status_rank < 1 THEN 'accepted' ELSE task_runs.status END,
    status_rank = GREATEST(task_runs.status_rank, 1)
"""

_RUN_STARTED = """
INSERT INTO task_runs (task_id, attempt, app, module, cluster, host, slot, agent, executor, image, container_id,
                       status, status_rank, started_at)
VALUES (%(task_id)s, %(attempt)s, %(app)s, %(module)s, %(cluster)s, %(host)s, %(slot)s, %(agent)s, %(executor)s,
        %(image)s, %(container_id)s, 'running', 2, to_timestamp(%(started_at)s))
ON CONFLICT (task_id, attempt) DO UPDATE SET
    executor = EXCLUDED.executor, image = EXCLUDED.image,
    container_id = COALESCE(EXCLUDED.container_id, task_runs.container_id),
    started_at = COALESCE(task_runs.started_at, EXCLUDED.started_at),
    status = CASE WHEN task_runs.status_rank < 2 THEN 'running' ELSE task_runs.status END,
    status_rank = GREATEST(task_runs.status_rank, 2)
"""

_FINISHED_COLUMNS = (
    "cluster", "host", "slot", "agent", "executor", "image", "container_id", "exit_code", "signal", "timed_out",
    "error", "stdout", "stderr", "custom_out", "message_text", "stdout_bytes", "stderr_bytes", "status_code",
    "input_bytes", "output_bytes", "read_bytes", "write_bytes", "cpu_user_s", "cpu_system_s",
    "peak_memory_bytes", "user_timestamps",
)

_RUN_FINISHED = f"""
INSERT INTO task_runs (task_id, attempt, app, module, status, status_rank, started_at, finished_at, recorded_at,
                       {", ".join(_FINISHED_COLUMNS)})
VALUES (%(task_id)s, %(attempt)s, %(app)s, %(module)s, %(outcome)s, 3, to_timestamp(%(started_at)s),
        to_timestamp(%(finished_at)s), to_timestamp(%(recorded_at)s),
        {", ".join(f"%({c})s" for c in _FINISHED_COLUMNS)})
ON CONFLICT (task_id, attempt) DO UPDATE SET
    status = EXCLUDED.status, status_rank = 3,
    started_at = COALESCE(task_runs.started_at, EXCLUDED.started_at),
    finished_at = EXCLUDED.finished_at, recorded_at = EXCLUDED.recorded_at,
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _FINISHED_COLUMNS if c != "container_id")},
    container_id = COALESCE(EXCLUDED.container_id, task_runs.container_id)
"""

_RUN_RETRY = "UPDATE task_runs SET retry_rule = %(rule)s WHERE task_id = %(task_id)s AND attempt = %(attempt)s"

_EDGE = """
INSERT INTO task_edges (parent_task_id, child_task_id, child_module, position)
VALUES (%(parent)s, %(child)s, %(module)s, %(position)s) ON CONFLICT DO NOTHING
"""

_PLACEHOLDER = """
INSERT INTO tasks (task_id, app, module, parent_task_id, status, status_rank, attempts)
VALUES (%(child)s, %(app)s, %(module)s, %(parent)s, 'created', 10, 0) ON CONFLICT (task_id) DO NOTHING
"""

_AGENT = """
INSERT INTO agents (agent, app, module, host, executor, slots, pid, state, started_at, last_seen_at)
VALUES (%(agent)s, %(app)s, %(module)s, %(host)s, %(executor)s, %(slots)s, %(pid)s, %(state)s,
        to_timestamp(%(at)s), to_timestamp(%(at)s))
ON CONFLICT (agent) DO UPDATE SET
    state = CASE WHEN agents.state = 'stopped' THEN agents.state ELSE EXCLUDED.state END,
    last_seen_at = GREATEST(agents.last_seen_at, EXCLUDED.last_seen_at),
    started_at = LEAST(agents.started_at, EXCLUDED.started_at)
"""

_APP_DEPLOYED = """
INSERT INTO apps (app, modules, source, spec_yaml, deployed_at)
VALUES (%(app)s, %(modules)s, %(source)s, %(spec_yaml)s, to_timestamp(%(at)s))
ON CONFLICT (app) DO UPDATE SET modules = EXCLUDED.modules, source = EXCLUDED.source,
    spec_yaml = EXCLUDED.spec_yaml, deployed_at = GREATEST(apps.deployed_at, EXCLUDED.deployed_at)
"""

_APP_FINISHED = "UPDATE apps SET finished_at = to_timestamp(%(at)s) WHERE app = %(app)s"


def _base(e: Event) -> dict:
    return {"task_id": e.task_id, "attempt": e.attempt, "app": e.app, "module": e.module, "cluster": e.cluster,
            "host": e.host, "at": _ts(e.occurred_at)}


def statements(events: Iterable[Event]) -> dict[str, list[dict]]:
    """Group the parameter sets of every statement the events call for, in a fixed statement order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        p = e.payload
        base = _base(e)
        kind = e.event_type
        if kind == "TaskCreated":
            stage = "created" if e.attempt <= 1 else "retrying"
            out[_TASK_UPSERT].append({**base, "body": p["body"], "headers": json.dumps(p["headers"]),
                                      "parent": p["parent_task_id"], "status": stage,
                                      "rank": task_rank(e.attempt, "created"), "attempts": 0,
                                      "created_at": base["at"]})
            out[_RUN_CREATED].append(base)
        elif kind == "TaskAccepted":
            out[_RUN_ACCEPTED].append({**base, "slot": p["slot"], "agent": p["agent"]})
            out[_TASK_STATUS].append({**base, "status": "accepted", "rank": task_rank(e.attempt, "accepted"),
                                      "attempts": e.attempt})
        elif kind == "TaskStarted":
            out[_RUN_STARTED].append({**base, **p, "started_at": _ts(p["started_at"])})
            out[_TASK_STATUS].append({**base, "status": "running", "rank": task_rank(e.attempt, "running"),
                                      "attempts": e.attempt})
        elif kind == "TaskFinished":
            row = {**base, **p, "started_at": _ts(p["started_at"]), "finished_at": _ts(p["finished_at"]),
                   "recorded_at": base["at"],
                   "user_timestamps": json.dumps([{"at": t["at"], "label": t["label"]} for t in p["user_timestamps"]])}
            out[_RUN_FINISHED].append(row)
            out[_TASK_RESULT].append(row)
            for position, (child, module) in enumerate(zip(p["emitted_task_ids"], p["emitted_modules"], strict=True)):
                link = {"parent": e.task_id, "child": child, "module": module, "position": position, "app": e.app}
                out[_EDGE].append(link)
                out[_PLACEHOLDER].append(link)
        elif kind == "TaskRetryScheduled":
            out[_RUN_RETRY].append({**base, "rule": p["rule"]})
            out[_TASK_STATUS].append({**base, "status": "retrying", "rank": task_rank(e.attempt, "retrying"),
                                      "attempts": e.attempt})
        elif kind in ("TaskSucceeded", "TaskFailed"):
            status = "succeeded" if kind == "TaskSucceeded" else "failed"
            out[_TASK_TERMINAL].append({**base, "status": status, "rank": TERMINAL_RANK, "attempts": p["attempts"]})
        elif kind == "AgentLifecycle":
            out[_AGENT].append({**base, **p})
        elif kind == "AppDeployed":
            out[_APP_DEPLOYED].append({**base, **p})
        elif kind == "AppFinished":
            out[_APP_FINISHED].append(base)
    return out


STATEMENT_ORDER = (_APP_DEPLOYED, _TASK_UPSERT, _PLACEHOLDER, _EDGE, _RUN_CREATED, _RUN_ACCEPTED, _RUN_STARTED,
                   _RUN_FINISHED, _RUN_RETRY, _TASK_RESULT, _TASK_STATUS, _TASK_TERMINAL, _AGENT, _APP_FINISHED)


def apply_events(cur: psycopg.Cursor, events: list[Event]) -> None:
    """Apply events to the projection (inside the caller's transaction)."""
    grouped = statements(events)
    for sql in STATEMENT_ORDER:
        params = grouped.get(sql)
        if params:
            cur.executemany(sql, params)


def record_new_event_ids(cur: psycopg.Cursor, events: list[Event]) -> set[str]:
    """Insert the batch's event ids; returns the ids not seen before (the ones to apply)."""
    if not events:
        return set()
    cur.execute(
        """INSERT INTO applied_events (event_id, event_type, task_id, occurred_at)
           SELECT e, t, k, to_timestamp(o / 1e6)
           FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bigint[]) AS x(e, t, k, o)
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id::text""",
        ([e.event_id for e in events], [e.event_type for e in events], [e.task_id for e in events],
         [e.occurred_at for e in events]),
    )
    return {row[0] for row in cur.fetchall()}
