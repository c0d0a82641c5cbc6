"""Attempts whose report Kafka could not take end as errors that name the limit, and hold no other task back.

One agent with one slot runs them all: before, each of these reports was retried forever and every report
after it waited behind it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from cluster import Cluster

from scalebox_stream.agent.limits import MAX_SINK_LINE_BYTES, MAX_SINK_LINES

GRACE_S = 5
PROGRAM = r"""#!/bin/sh
cd "$WORK_DIR"
case "$1" in
lines) seq 100000 > sink-tasks.txt ;;
long) head -c 2000000 /dev/zero | tr '\0' y > sink-tasks.txt ;;
loud) head -c 600000 /dev/zero | tr '\0' '\377'; head -c 600000 /dev/zero | tr '\0' '\377' >&2 ;;
esac
"""


def test_oversized_reports_fail_their_task_and_block_no_other(tmp_path: Path, kafka_bootstrap, pg_dsn):
    (tmp_path / "prog.sh").write_text(PROGRAM)
    (tmp_path / "prog.sh").chmod(0o755)
    app = tmp_path / "app.yaml"
    app.write_text(f"name: limits-{uuid.uuid4().hex[:8]}\nmodules:\n  m:\n    command: [{tmp_path / 'prog.sh'}]\n"
                   "    sink_modules: [m]\n    output_text_size: 262144\n")
    cluster = Cluster(app, kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        agent = cluster.start_agent("m", 1, "--grace", str(GRACE_S))
        cluster.start_projector()
        bodies = ["lines", "long", "loud", "ok"]
        ids = cluster.send("m", bodies)
        assert cluster.wait(ids, timeout_s=120).finished
        began = time.monotonic()
        assert cluster.terminate(agent, timeout_s=GRACE_S + 20) == 0
        assert time.monotonic() - began < GRACE_S + 10
        rows = {task_id: (status, error) for task_id, status, error in cluster.query(
            "SELECT task_id::text, status, error FROM task_runs WHERE task_id = ANY(%s::uuid[])", ids)}
    finally:
        cluster.close()
    runs = {body: rows[task_id] for body, task_id in zip(bodies, ids, strict=True)}
    assert runs["lines"] == ("error", f"sink-tasks.txt has 100000 lines; the limit is {MAX_SINK_LINES}")
    assert runs["long"] == ("error", f"sink-tasks.txt line 1 is 2000000 bytes; the limit is {MAX_SINK_LINE_BYTES}")
    assert runs["loud"][0] == "error"
    assert runs["loud"][1].startswith("the attempt's report cannot be published: a record for sbx.events is ")
    assert runs["ok"] == ("succeeded", None)
