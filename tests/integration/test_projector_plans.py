"""The projector's merges probe the tables' indexes once per staged row: their cost follows the batch, not
the size of the projection (a run of weeks must not make every batch scan `tasks` and `task_runs`)."""

from __future__ import annotations

import uuid

import psycopg
from support import verify, workload

from scalebox_stream.projector import apply
from scalebox_stream.projector.fold import fold
from scalebox_stream.projector.migrate import migrate


def _plan(cur: psycopg.Cursor, sql: str) -> str:
    return "\n".join(row[0] for row in cur.execute("EXPLAIN " + sql).fetchall())


def test_merges_use_the_primary_keys_whatever_the_table_size(pg_dsn: str) -> None:
    name = f"plans_{uuid.uuid4().hex[:8]}"
    dsn = verify.create_database(pg_dsn, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            apply.prepare_session(conn)
            events = list(workload.generate(20_000, seed=3, app="plans"))
            with conn.transaction(), conn.cursor() as cur:  # a projection much bigger than one batch
                apply.apply_events(cur, events[:-1000])
            conn.execute("ANALYZE")
            with conn.transaction(), conn.cursor() as cur:
                f = fold(events[-1000:])
                apply.stage_fold(cur, f)
                task_plan, run_plan = _plan(cur, apply._TASK_MERGE), _plan(cur, apply._RUN_MERGE)
                apply.merge_staged(cur, f)
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tasks", "task_runs")}
    finally:
        verify.drop_database(pg_dsn, name)
    assert counts["tasks"] > 3000 and counts["task_runs"] > 3000
    assert "Seq Scan on tasks" not in task_plan and "tasks_pkey" in task_plan, task_plan
    assert "Seq Scan on task_runs" not in run_plan and "task_runs_pkey" in run_plan, run_plan
