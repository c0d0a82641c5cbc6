"""Admission control: Scalebox's wait-queue test (a counter at 2, five tasks), and the per-host limit."""

from __future__ import annotations

import time
import uuid

from cluster import Cluster

CHECK = """#!/bin/sh
# admit only while the counter is above 0, and take one
exec 9>"$COUNTER.lock"
flock 9
n=$(cat "$COUNTER")
if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$COUNTER"; exit 0; fi
echo "counter is $n"
exit 10
"""


def test_check_admits_only_while_the_counter_is_positive(tmp_path, kafka_bootstrap, pg_dsn):
    counter = tmp_path / "counter"
    counter.write_text("2\n")
    (tmp_path / "check.sh").write_text(CHECK)
    (tmp_path / "check.sh").chmod(0o755)
    app = f"admission-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  gated:\n    command: [/bin/true]\n    check: ./check.sh\n    slots: 2\n"
        f"    environments: {{COUNTER: '{counter}'}}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        c.start_projector()
        c.start_agent("gated", 2)
        roots = c.send("gated", [f"t{i}" for i in range(5)])
        c.wait_for("SELECT 1 FROM tasks WHERE app = %s GROUP BY app HAVING count(*) FILTER "
                   "(WHERE status = 'succeeded') = 2", app, timeout_s=60)
        time.sleep(2)  # the refused tasks check again 0.5 s and 1.5 s after their first refusal
        (module,) = c.state(roots).modules
        assert module["succeeded"] == 2, "only two tasks may pass while the counter was 2"
        counter.write_text("3\n")
        (module,) = c.wait(roots, timeout_s=60).modules
        assert (module["succeeded"], module["failed"]) == (5, 0)
        refusals = [r[0] for r in c.query("SELECT admission_refusals FROM task_runs r JOIN tasks t USING (task_id) "
                                          "WHERE t.app = %s ORDER BY admission_refusals", app)]
        assert refusals[:2] == [0, 0] and all(n >= 1 for n in refusals[2:]), refusals
    finally:
        c.close()


def test_max_tasks_per_host_is_shared_by_the_agents_of_a_host(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"perhost-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  busy:\n    command: [/bin/sh, -c, 'sleep 0.5']\n    max_tasks_per_host: 1\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        c.start_projector()
        c.start_agent("busy", 2, "--host", "hx")
        c.start_agent("busy", 2, "--host", "hx")
        c.wait_for_members("busy", 2)
        roots = c.send("busy", [f"t{i}" for i in range(6)])
        c.wait(roots, timeout_s=120)
        spans = c.query("SELECT r.started_at, r.finished_at FROM task_runs r JOIN tasks t USING (task_id) "
                        "WHERE t.app = %s ORDER BY r.started_at", app)
        overlaps = sum(1 for (s1, f1), (s2, _) in zip(spans, spans[1:], strict=False) if s2 < f1)
        assert len(spans) == 6 and overlaps == 0, spans
    finally:
        c.close()
