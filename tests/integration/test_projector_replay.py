"""Replay rebuilds the projection exactly: a real run (children, a retry, a failure), projected in small
batches, then dropped and replayed in big ones, gives byte-identical tables.

The run's events are copied from the shared `sbx.events` into a topic of their own (other tests write to
`sbx.events` too), and projected into a database of their own."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
from pipeline import scalebox
from replay_support import app_events, copy_to_topic, replayed_digests
from support import verify

from scalebox_stream.projector.service import Projector, ProjectorSettings

SPLIT = """#!/bin/sh
# body N: emits N work tasks
i=1
while [ "$i" -le "$1" ]; do echo "work,item-$i" >>"$WORK_DIR/sink-tasks.txt"; i=$((i + 1)); done
echo "split into $1"
"""
WORK = """#!/bin/sh
# item-2 fails its first attempt (then succeeds), item-3 always fails, the others succeed
echo "working on $1 (attempt $ATTEMPT)"
echo "$1 done" >"$WORK_DIR/custom-out.txt"
echo "2024-01-02T03:04:05Z,begin" >"$WORK_DIR/timestamps.txt"
printf 'item=%s\nattempt=%s\n' "$1" "$ATTEMPT" >"$WORK_DIR/extra-attributes.txt"
[ "$1" = item-3 ] && exit 3
[ "$1" = item-2 ] && [ "$ATTEMPT" = 1 ] && exit 1
exit 0
"""

CHECK = """#!/bin/sh
# admission: item-1 is refused once (its acceptance then goes out as a TaskAccepted of its own)
mark="$(dirname "$0")/refused-once"
[ "$1" = item-1 ] && [ ! -e "$mark" ] && : >"$mark" && exit 1
exit 0
"""


def write_app(directory: Path, name: str) -> Path:
    """A two-module process-executor app: split -> work (retries on exit 1, not on exit 3; admission refuses
    item-1 once)."""
    for module, script in (("split", SPLIT), ("work", WORK), ("work-check", CHECK)):
        path = directory / module / "run.sh"
        path.parent.mkdir(parents=True)
        path.write_text(script)
        path.chmod(0o755)
    app = directory / "app.yaml"
    app.write_text(f"""name: {name}
modules:
  split:
    command: ./split/run.sh
    sink_modules: [work]
  work:
    command: ./work/run.sh
    check: ./work-check/run.sh
    slots: 2
    retry_rules: ['1:2']
""")
    return app


def run_app(kafka: str, pg: str, directory: Path, items: int = 4) -> tuple[str, int]:
    """Run the app once; returns its name and the time (ms) just before it started."""
    name = f"replay-{uuid.uuid4().hex[:8]}"
    since_ms = int(time.time() * 1000) - 5000
    result = scalebox(["run", str(write_app(directory, name)), str(items)], kafka, pg)
    assert result.code == 1, f"item-3 should fail the run\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return name, since_ms


def test_replay_rebuilds_identical_tables(kafka_bootstrap, pg_dsn, tmp_path):
    app, since_ms = run_app(kafka_bootstrap, pg_dsn, tmp_path)
    records = app_events(kafka_bootstrap, app, since_ms)
    types = {e.event_type for _, _, e in records}
    assert {"AppDeployed", "TaskCreated", "TaskAccepted", "TaskStarted", "TaskFinished", "TaskRetryScheduled",
            "TaskFailed", "AgentLifecycle"} <= types, types
    topic = f"sbx.test.replay.{app}"
    copy_to_topic(kafka_bootstrap, records, topic)

    db = f"replay_{app.replace('-', '_')}"
    dsn = verify.create_database(pg_dsn, db)
    try:
        incremental = Projector(kafka_bootstrap, dsn, ProjectorSettings(batch_size=3), group=f"sbx.test.{app}.a",
                                topic=topic)
        stats = incremental.run(until_caught_up=True, install_signals=False)
        assert stats.applied == len(records) and stats.batches > 3
        with psycopg.connect(dsn) as conn:
            before = verify.table_digests(conn)
            tasks = {body: (status, attempts, exit_code, custom_out) for body, status, attempts, exit_code, custom_out
                     in conn.execute("SELECT body, status, attempts, exit_code, custom_out FROM tasks")}
            runs = conn.execute("SELECT count(*) FROM task_runs").fetchone()[0]
            edges = conn.execute("SELECT count(*) FROM task_edges").fetchone()[0]
            stamps = conn.execute("SELECT user_timestamps FROM task_runs WHERE status_rank = 3 "
                                      "AND jsonb_array_length(user_timestamps) > 0 LIMIT 1").fetchone()[0]
            extras = {row[0]["item"]: row[0] for row in conn.execute(
                "SELECT extra_attributes FROM task_runs WHERE extra_attributes IS NOT NULL")}

        after = replayed_digests(kafka_bootstrap, dsn, topic, f"sbx.test.{app}.b")
    finally:
        verify.drop_database(pg_dsn, db)

    assert tasks == {
        "4": ("succeeded", 1, 0, ""), "item-1": ("succeeded", 1, 0, "item-1 done\n"),
        "item-2": ("succeeded", 2, 0, "item-2 done\n"), "item-3": ("failed", 1, 3, "item-3 done\n"),
        "item-4": ("succeeded", 1, 0, "item-4 done\n")}, tasks
    assert runs == 6 and edges == 4
    assert stamps and stamps[0]["label"] == "begin"
    assert extras["item-4"] == {"item": "item-4", "attempt": "1"} and len(extras) == 4, extras
    assert after == before, {t: (before[t], after[t]) for t in before if before[t] != after[t]}
    assert after["applied_events"][0] == len(records)
