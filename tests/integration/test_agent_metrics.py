"""`scalebox agent --metrics-port`: the agent's Prometheus metrics count what the projection records."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable

from cluster import Cluster
from pipeline import FAILS_ON_BAD, free_port
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from an agent's /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_agent_metrics_count_the_attempts_the_projection_records(tmp_path, kafka_bootstrap, pg_dsn):
    port = free_port()
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "metrics", "work", FAILS_ON_BAD)
    app = c.spec.name
    try:
        c.start_projector()
        c.start_agent("work", 2, "--metrics-port", str(port), "--host", "metrics-host")
        roots = c.send("work", [f"ok{i}" for i in range(5)] + ["bad1", "bad2"])
        c.wait(roots, timeout_s=120)
        runs = dict(c.query("SELECT status, count(*) FROM task_runs WHERE app = %s GROUP BY status", app))
        assert runs.get("succeeded") == 5 and runs.get("failed", 0) >= 2, runs

        ours = {"app": app, "module": "work", "host": "metrics-host", "cluster": "local"}
        deadline = time.monotonic() + 30
        while sample(samples := scrape(port), "scalebox_agent_slots_busy", **ours) and time.monotonic() < deadline:
            time.sleep(0.2)  # the last reports go out with the next transaction
        assert sample(samples, "scalebox_agent_attempts_started_total", **ours) == sum(runs.values())
        assert sample(samples, "scalebox_agent_attempts_finished_total", outcome="succeeded", **ours) == 5
        assert sample(samples, "scalebox_agent_attempts_finished_total", outcome="failed", **ours) == runs["failed"]
        assert sample(samples, "scalebox_agent_attempt_seconds_count", **ours) == sum(runs.values())
        assert sample(samples, "scalebox_agent_transactions_total", outcome="committed", **ours) >= 1
        assert sample(samples, "scalebox_agent_transactions_total", outcome="failed", **ours) == 0
        assert sample(samples, "scalebox_agent_slots", **ours) == 2
        assert sample(samples, "scalebox_agent_slots_busy", **ours) == 0
        assert sample(samples, "scalebox_agent_tasks_buffered", **ours) == 0
        assert sample(samples, "scalebox_agent_suspended", **ours) == 0
        assert all("task_id" not in dict(labels) for _, labels in samples), "no per-task labels"
    finally:
        c.close()


def test_module_backlog_counts_the_tasks_in_kafka_not_done_yet(tmp_path, kafka_bootstrap, pg_dsn):
    port, gate = free_port(), tmp_path / "gate-closed"
    gate.touch()
    (tmp_path / "check.sh").write_text('#!/bin/sh\n[ ! -e "$GATE" ]\n')
    (tmp_path / "check.sh").chmod(0o755)
    (tmp_path / "app.yaml").write_text(f"name: backlog-{uuid.uuid4().hex[:8]}\nmodules:\n  gated:\n"
                                       f"    command: [/bin/true]\n    check: ./check.sh\n"
                                       f"    environments: {{GATE: '{gate}'}}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    ours = {"app": c.spec.name, "module": "gated"}

    def reaches(name: str, done: Callable[[float], bool]) -> float:
        """Scrape until the sample `name` satisfies `done` (or a minute passed); its last value."""
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                if done(seen := sample(scrape(port), name, **ours)):
                    break
            except OSError:
                pass  # the agent is still starting
            time.sleep(0.3)
        return seen

    def backlog_becomes(value: float) -> float:
        return reaches("scalebox_agent_module_backlog", lambda seen: seen == value)

    try:
        c.start_projector()
        c.start_agent("gated", 2, "--metrics-port", str(port))
        roots = c.send("gated", [f"t{i}" for i in range(5)])
        assert backlog_becomes(5) == 5, "five tasks wait while the check refuses them"
        # The backlog counts the tasks as soon as they are in Kafka, maybe before the agent has checked any of them.
        assert reaches("scalebox_agent_admission_refusals_total", lambda seen: seen >= 2) >= 2
        gate.unlink()
        (module,) = c.wait(roots, timeout_s=120).modules
        assert module["succeeded"] == 5
        assert backlog_becomes(0) == 0, "none once they are done"
    finally:
        c.close()
