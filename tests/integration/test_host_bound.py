"""Location-aware scheduling: HOST-BOUND modules, pods, and hosts without agents."""

from __future__ import annotations

import uuid

from cluster import Cluster

STAGE = """#!/bin/sh
printf '%s' "$HOST_NAME" > "$WORK_DIR/custom-out.txt"
case "$MODULE_NAME" in
  first) echo "$1" > "$WORK_DIR/sink-tasks.txt" ;;
  podded) echo "$1" > "$WORK_DIR/sink-tasks.txt" ;;
  lost) printf 'second,%s,{"to_host":"nowhere"}\\nrerouted,%s,{"to_host":"nowhere"}\\n' "$1" "$1" \
          > "$WORK_DIR/sink-tasks.txt" ;;
esac
"""

HOSTS = ("h1", "h2", "h3")


def _app(tmp_path, name: str, kafka: str, pg: str) -> Cluster:
    (tmp_path / "stage.sh").write_text(STAGE)
    (tmp_path / "stage.sh").chmod(0o755)
    (tmp_path / "app.yaml").write_text(
        f"name: {name}\nmodules:\n"
        "  first:\n    command: ./stage.sh\n    sink_modules: [second]\n"
        "  second:\n    command: ./stage.sh\n    task_dist_mode: HOST-BOUND\n    host_wait_seconds: 2\n"
        "  podded:\n    command: ./stage.sh\n    pod_id: p1\n    sink_modules: [pod_mate]\n"
        "  pod_mate:\n    command: ./stage.sh\n    pod_id: p1\n"
        "  lost:\n    command: ./stage.sh\n"
        "  rerouted:\n    command: ./stage.sh\n    task_dist_mode: HOST-BOUND\n    host_wait_seconds: 2\n"
        "    on_missing_host: reroute\n")
    return Cluster(tmp_path / "app.yaml", kafka, pg, tmp_path / "logs")


def _hosts_of(c: Cluster, module: str) -> dict[str, tuple[str, str]]:
    """child task id -> (its host, its parent's host) for the module's succeeded attempts."""
    rows = c.query("""SELECT t.task_id::text, r.host, pr.host FROM tasks t
                      JOIN task_runs r ON r.task_id = t.task_id AND r.status = 'succeeded'
                      JOIN task_runs pr ON pr.task_id = t.parent_task_id AND pr.status = 'succeeded'
                      WHERE t.app = %s AND t.module = %s""", c.spec.name, module)
    return {task: (host, parent_host) for task, host, parent_host in rows}


def test_second_stage_runs_where_the_first_ran(tmp_path, kafka_bootstrap, pg_dsn):
    c = _app(tmp_path, f"hostbound-{uuid.uuid4().hex[:8]}", kafka_bootstrap, pg_dsn)
    try:
        c.start_projector()
        for host in HOSTS:
            for module in ("first", "second", "podded", "pod_mate"):
                c.start_agent(module, 1, "--host", host)
        for module in ("first", "podded"):  # else the first agent up may fetch (and run) every task
            c.wait_for_members(module, len(HOSTS))
        roots = c.send("first", [f"x{i}" for i in range(12)]) + c.send("podded", [f"p{i}" for i in range(6)])
        state = c.wait(roots, timeout_s=180)
        assert all(m["failed"] == 0 for m in state.modules), state.modules
        second = _hosts_of(c, "second")
        assert len(second) == 12
        assert all(host == parent for host, parent in second.values()), second
        assert len({parent for _, parent in second.values()}) >= 2, "the first stage ran on one host only"
        mates = _hosts_of(c, "pod_mate")
        assert len(mates) == 6 and all(host == parent for host, parent in mates.values()), mates
    finally:
        c.close()


def test_a_host_without_agents_fails_clearly_or_reroutes(tmp_path, kafka_bootstrap, pg_dsn):
    c = _app(tmp_path, f"nohost-{uuid.uuid4().hex[:8]}", kafka_bootstrap, pg_dsn)
    try:
        c.start_projector()
        for module in ("lost", "second", "rerouted"):
            c.start_agent(module, 1, "--host", "h1")
        roots = c.send("lost", ["y"])
        state = c.wait(roots, timeout_s=120)
        counts = {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules}
        assert counts == {"lost": (1, 0), "second": (0, 1), "rerouted": (1, 0)}
        ((error,),) = c.query("SELECT r.error FROM task_runs r JOIN tasks t USING (task_id) "
                              "WHERE t.app = %s AND t.module = 'second'", c.spec.name)
        assert "no agent of module second serves host nowhere" in error
    finally:
        c.close()
