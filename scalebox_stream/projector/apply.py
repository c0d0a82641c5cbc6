"""Merging a batch's deltas into PostgreSQL: one set-based statement per table.

`fold.py` reduces a batch to at most one delta per row; the deltas are COPYed into session-local staging
tables (psycopg formats the rows in C), and each table then gets a single statement that merges them: it
updates the rows that exist and inserts the missing ones that a creating event (TaskCreated, an attempt's
first event, a parent's placeholder) allows. The SQL repeats
the fold's rules (least, greatest, first or last non-null, highest rank), so the rows do not depend on
how the log was cut into batches. Rare events (apps, agents) keep one small statement per event.
"""

from __future__ import annotations

import psycopg

from scalebox_stream.events import Event
from scalebox_stream.projector.fold import FINISHED_FIELDS, TERMINAL_RANK, Fold, fold, task_rank

__all__ = ["SESSION_SETTINGS", "STAGING_TABLES", "TERMINAL_RANK", "apply_events", "apply_fold", "merge_staged",
           "prepare_session", "record_new_event_ids", "record_staged_event_ids_expecting_fresh", "stage_event_ids",
           "stage_fold", "task_rank"]


def _ts(column: str) -> str:
    """SQL turning a µs-since-epoch bigint into an exact timestamptz (NULL stays NULL)."""
    return f"(timestamptz 'epoch' + {column} * interval '1 microsecond')"


# Session-local staging tables, one row per delta (`STAGING_TABLES`, created by `prepare_session`).
_TASK_STAGE = (("task_id", "uuid"), ("app", "text"), ("module", "text"), ("creates", "bool"), ("body", "text"),
               ("headers", "jsonb"), ("parent", "uuid"), ("created_at", "bigint"), ("status", "text"),
               ("rank", "bigint"), ("finished_at", "bigint"), ("attempts", "int"), ("result_attempt", "int"),
               ("exit_code", "int"), ("host", "text"), ("custom_out", "text"))
_FINISHED_TYPES = ("int", "int", "bool", "text", "text", "text", "text", "text", "bigint", "bigint", "int",
                   "bigint", "bigint", "bigint", "bigint", "float8", "float8", "bigint", "jsonb")
_RUN_STAGE = (("task_id", "uuid"), ("attempt", "int"), ("app", "text"), ("module", "text"), ("creates", "bool"),
              ("cluster", "text"), ("host", "text"), ("slot", "int"), ("agent", "text"), ("executor", "text"),
              ("image", "text"), ("container_id", "text"), ("status", "text"), ("rank", "int"),
              ("created_at", "bigint"), ("accepted_at", "bigint"), ("started_at", "bigint"), ("retry_rule", "text"),
              ("admission_refusals", "int"), ("fin", "bool"), *zip(FINISHED_FIELDS, _FINISHED_TYPES, strict=True),
              ("user_timestamps", "jsonb"), ("finished_at", "bigint"), ("recorded_at", "bigint"))
_EDGE_STAGE = (("parent_task_id", "uuid"), ("child_task_id", "uuid"), ("child_module", "text"), ("position", "int"))
_EVENT_STAGE = (("event_id", "uuid"), ("event_type", "text"), ("task_id", "text"), ("occurred_at", "bigint"))
STAGING_TABLES = {"sbx_stage_tasks": _TASK_STAGE, "sbx_stage_runs": _RUN_STAGE, "sbx_stage_edges": _EDGE_STAGE,
                  "sbx_stage_events": _EVENT_STAGE}

_TASK_MERGE = f"""
WITH d AS (
    SELECT * FROM sbx_stage_tasks
), u AS (
    UPDATE tasks t SET
        body = COALESCE(t.body, d.body),
        headers = CASE WHEN t.body IS NULL AND d.body IS NOT NULL THEN d.headers ELSE t.headers END,
        parent_task_id = COALESCE(t.parent_task_id, d.parent),
        created_at = LEAST(t.created_at, {_ts("d.created_at")}),
        status = CASE WHEN d.rank > t.status_rank THEN d.status ELSE t.status END,
        finished_at = CASE WHEN d.rank > t.status_rank THEN {_ts("d.finished_at")} ELSE t.finished_at END,
        status_rank = GREATEST(t.status_rank, d.rank),
        attempts = GREATEST(t.attempts, d.attempts),
        exit_code = CASE WHEN d.result_attempt >= t.attempts THEN d.exit_code ELSE t.exit_code END,
        host = CASE WHEN d.result_attempt >= t.attempts THEN d.host ELSE t.host END,
        custom_out = CASE WHEN d.result_attempt >= t.attempts THEN d.custom_out ELSE t.custom_out END
    FROM d WHERE t.task_id = d.task_id
    RETURNING t.task_id
), new AS (
    SELECT * FROM d WHERE creates AND task_id NOT IN (SELECT task_id FROM u)
), ins AS (
    INSERT INTO tasks (task_id, app, module, body, headers, parent_task_id, status, status_rank, attempts,
                       exit_code, host, custom_out, created_at, finished_at)
    SELECT task_id, app, module, body, COALESCE(headers, '{{}}'), parent, COALESCE(status, 'created'),
           COALESCE(rank, 0), attempts, exit_code, host,
           custom_out, {_ts("created_at")}, {_ts("finished_at")}
    FROM new ON CONFLICT (task_id) DO NOTHING RETURNING 1
)
SELECT projector_expect_placed((SELECT count(*) FROM ins), (SELECT count(*) FROM new))
"""

_FIN_COLUMNS = (*FINISHED_FIELDS, "user_timestamps")

_RUN_MERGE = f"""
WITH d AS (
    SELECT * FROM sbx_stage_runs
), u AS (
    UPDATE task_runs r SET
        cluster = COALESCE(d.cluster, r.cluster), host = COALESCE(d.host, r.host),
        slot = COALESCE(d.slot, r.slot), agent = COALESCE(d.agent, r.agent),
        executor = COALESCE(d.executor, r.executor), image = COALESCE(d.image, r.image),
        container_id = COALESCE(d.container_id, r.container_id),
        status = CASE WHEN d.rank >= r.status_rank THEN d.status ELSE r.status END,
        status_rank = GREATEST(r.status_rank, d.rank),
        created_at = LEAST(r.created_at, {_ts("d.created_at")}),
        accepted_at = COALESCE({_ts("d.accepted_at")}, r.accepted_at),
        started_at = COALESCE(r.started_at, {_ts("d.started_at")}),
        retry_rule = COALESCE(d.retry_rule, r.retry_rule),
        admission_refusals = COALESCE(d.admission_refusals, r.admission_refusals),
        {", ".join(f"{c} = CASE WHEN d.fin THEN d.{c} ELSE r.{c} END" for c in _FIN_COLUMNS)},
        finished_at = CASE WHEN d.fin THEN {_ts("d.finished_at")} ELSE r.finished_at END,
        recorded_at = CASE WHEN d.fin THEN {_ts("d.recorded_at")} ELSE r.recorded_at END
    FROM d WHERE r.task_id = d.task_id AND r.attempt = d.attempt
    RETURNING r.task_id, r.attempt
), new AS (
    SELECT * FROM d WHERE creates AND (task_id, attempt) NOT IN (SELECT task_id, attempt FROM u)
), ins AS (
    INSERT INTO task_runs (task_id, attempt, app, module, cluster, host, slot, agent, executor, image,
                           container_id, status, status_rank, created_at, accepted_at, started_at, retry_rule,
                           admission_refusals, {", ".join(_FIN_COLUMNS)}, finished_at, recorded_at)
    SELECT task_id, attempt, app, module, cluster, host, slot, agent, executor, image, container_id,
           status, rank, {_ts("created_at")}, {_ts("accepted_at")}, {_ts("started_at")}, retry_rule,
           admission_refusals,
           {", ".join(_FIN_COLUMNS[:-1])}, COALESCE(user_timestamps, '[]'), {_ts("finished_at")},
           {_ts("recorded_at")}
    FROM new ON CONFLICT (task_id, attempt) DO NOTHING RETURNING 1
)
SELECT projector_expect_placed((SELECT count(*) FROM ins), (SELECT count(*) FROM new))
"""

_EDGE_MERGE = """
INSERT INTO task_edges (parent_task_id, child_task_id, child_module, position)
SELECT * FROM sbx_stage_edges ON CONFLICT DO NOTHING
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

_MODULE_STATE = """
INSERT INTO module_states (app, module, state, reason, agent, changed_at)
VALUES (%(app)s, %(module)s, %(state)s, %(reason)s, %(agent)s, to_timestamp(%(at)s))
ON CONFLICT (app, module) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, agent = EXCLUDED.agent,
    changed_at = EXCLUDED.changed_at WHERE module_states.changed_at <= EXCLUDED.changed_at
"""

_STATE_HISTORY = """
WITH h AS (
    INSERT INTO state_history (event_id, kind, app, name, version, op, value, old_value, request_id, changed_at)
    VALUES (%(event_id)s, %(kind)s, %(app)s, %(name)s, %(version)s, %(op)s, %(value)s, %(old_value)s,
            %(request_id)s, to_timestamp(%(at)s))
    ON CONFLICT (event_id) DO NOTHING
)"""
"""A state change's history row, the first part of both statements below."""

# A state change: its history row, the current value (a higher version wins), and an app's result on its row.
_STATE_CHANGED = _STATE_HISTORY + """, v AS (
    INSERT INTO state_values (kind, app, name, value, version, changed_at)
    VALUES (%(kind)s, %(app)s, %(name)s, %(value)s, %(version)s, to_timestamp(%(at)s))
    ON CONFLICT (kind, app, name) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version,
        changed_at = EXCLUDED.changed_at WHERE state_values.version < EXCLUDED.version
)
UPDATE apps SET result = %(value)s, finished_at = COALESCE(finished_at, to_timestamp(%(at)s))
WHERE %(kind)s::text = 'app' AND app = %(app)s::text
"""

# A deleted item: its history row (op 'delete', the value it had as old_value) and its current value gone. The
# delete's version is one past the item's, so a row only ever meets the delete of its own life (events of one
# item are in log order: a re-created item's row comes after it).
_STATE_DELETED = _STATE_HISTORY + """
DELETE FROM state_values WHERE kind = %(kind)s AND app = %(app)s AND name = %(name)s AND version < %(version)s
"""

_RARE = {"AgentLifecycle": _AGENT, "AppDeployed": _APP_DEPLOYED, "AppFinished": _APP_FINISHED,
         "ModuleState": _MODULE_STATE, "StateChanged": _STATE_CHANGED}


# The projector's session: a commit need not wait for the disk (a crash loses at most the last few
# batches, and their positions with them, so they are projected again), and a merge probes the tables'
# indexes once per staged row rather than hashing a whole (ever-growing) table per batch.
SESSION_SETTINGS = {"synchronous_commit": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}


def prepare_session(conn: psycopg.Connection) -> None:
    """Apply `SESSION_SETTINGS` and create the staging tables (once per connection, outside a transaction).

    Committing empties the staging tables in place; TRUNCATE would give them new files, and so invalidate
    every cached plan."""
    for name, value in SESSION_SETTINGS.items():
        conn.execute(f"SET {name} = {value}")
    for name, columns in STAGING_TABLES.items():
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({', '.join(f'{c} {t}' for c, t in columns)})"
                     " ON COMMIT DELETE ROWS")


def task_rows(f: Fold) -> list[tuple]:
    """The `sbx_stage_tasks` rows of a fold."""
    return [(t.task_id, t.app, t.module, t.creates, t.body, t.headers, t.parent, t.created_at, t.status,
             t.rank, t.finished_at, t.attempts, t.result_attempt, t.exit_code, t.host, t.custom_out)
            for t in f.tasks.values()]


_NO_FINISH = (None,) * (len(_FIN_COLUMNS) + 2)


def run_rows(f: Fold) -> list[tuple]:
    """The `sbx_stage_runs` rows of a fold."""
    return [(r.task_id, r.attempt, r.app, r.module, r.creates, r.cluster, r.host, r.slot, r.agent,
             r.executor, r.image, r.container_id, r.status, r.rank, r.created_at, r.accepted_at,
             r.started_at, r.retry_rule, r.admission_refusals, r.finished is not None,
             *(r.finished or _NO_FINISH))
            for r in f.runs.values()]


def _copy(cur: psycopg.Cursor, table: str, rows: list[tuple]) -> None:
    with cur.copy(f"COPY {table} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def stage_fold(cur: psycopg.Cursor, f: Fold) -> None:
    """COPY a fold's deltas into the (empty) staging tables; waits for the server, so it is not pipelined."""
    if f.tasks:
        _copy(cur, "sbx_stage_tasks", task_rows(f))
    if f.runs:
        _copy(cur, "sbx_stage_runs", run_rows(f))
    if f.edges:
        _copy(cur, "sbx_stage_edges", [(p, c, m, pos) for (p, c), (m, pos) in f.edges.items()])


def merge_staged(cur: psycopg.Cursor, f: Fold) -> None:
    """Merge the staged deltas of `f` and apply its rare events (no answers needed: can be pipelined)."""
    if f.tasks:
        cur.execute(_TASK_MERGE)
    if f.runs:
        cur.execute(_RUN_MERGE)
    if f.edges:
        cur.execute(_EDGE_MERGE)
    for e in f.rare:
        cur.execute(_rare_statement(e), _rare_params(e))


def _rare_statement(e: Event) -> str:
    """The statement that projects a rare event (a state change that deletes its item has its own)."""
    if e.event_type == "StateChanged" and e.payload.op == "delete":
        return _STATE_DELETED
    return _RARE[e.event_type]


def _rare_params(e: Event) -> dict:
    return {"app": e.app, "module": e.module, "host": e.host, "at": e.occurred_at / 1e6, "event_id": e.event_id,
            **e.payload.to_avro()}


def apply_fold(cur: psycopg.Cursor, f: Fold) -> None:
    """Merge a fold's deltas into the projection (inside the caller's transaction, which may have merged
    others before: the staging tables are emptied first)."""
    for table in STAGING_TABLES:
        cur.execute(f"DELETE FROM {table}")
    stage_fold(cur, f)
    merge_staged(cur, f)


def apply_events(cur: psycopg.Cursor, events: list[Event]) -> None:
    """Apply events (in log order) to the projection (inside the caller's transaction)."""
    apply_fold(cur, fold(events))


def record_new_event_ids(cur: psycopg.Cursor, events: list[Event]) -> set[str]:
    """Insert the batch's event ids; returns the ids not seen before (the ones to apply)."""
    if not events:
        return set()
    cur.execute(
        """INSERT INTO applied_events (event_id, event_type, task_id, occurred_at)
           SELECT e, t, k, timestamptz 'epoch' + o * interval '1 microsecond'
           FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bigint[]) AS x(e, t, k, o)
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id::text""",
        ([e.event_id for e in events], [e.event_type for e in events], [e.task_id for e in events],
         [e.occurred_at for e in events]),
    )
    return {row[0] for row in cur.fetchall()}


def stage_event_ids(cur: psycopg.Cursor, events: list[Event]) -> None:
    """COPY the batch's event ids into `sbx_stage_events` (waits for the server)."""
    _copy(cur, "sbx_stage_events", [(e.event_id, e.event_type, e.task_id, e.occurred_at) for e in events])


def record_staged_event_ids_expecting_fresh(cur: psycopg.Cursor) -> None:
    """Insert the staged event ids; an id applied before aborts the transaction with a unique violation
    (the projector then applies the batch again the careful way). Needs no answer: can be pipelined."""
    cur.execute(f"""INSERT INTO applied_events (event_id, event_type, task_id, occurred_at)
                    SELECT event_id, event_type, task_id, {_ts("occurred_at")} FROM sbx_stage_events""")


CONCURRENT_INSERT_SQLSTATE = "SBX02"  # another projector inserted one of the batch's rows meanwhile: retry
