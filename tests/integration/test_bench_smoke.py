"""A short run of every benchmark, so CI knows they still work (the numbers are reported, not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pipeline import REPO


def _smoke(script: str, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / script), "--smoke", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_engine_latency_and_peer_benchmarks_run(kafka_bootstrap, pg_dsn):
    out = _smoke("run_all.py", "--kafka", kafka_bootstrap, "--pg", pg_dsn)
    print(out[-4500:])
    assert "engine 2-stage" in out and "latency 3 modules p50" in out and "engine vs celery" in out
    assert "engine vs celery-redis" in out and "engine vs celery-pg" in out and "engine vs quix" in out
    assert "engine vs best peer, c=2" in out and "latency 3 modules p99" in out


@pytest.mark.usefixtures("example_images")
def test_container_benchmark_runs():
    out = _smoke("bench_containers.py")
    print(out[-1500:])
    assert "docker exec" in out


def test_million_tasks_benchmark_runs(kafka_bootstrap, pg_dsn):
    out = _smoke("bench_million.py", "--kafka", kafka_bootstrap, "--pg", pg_dsn)
    print(out[-2500:])
    assert "million tasks: 2000 task executions" in out
    assert "rate: last window >= 0.9 x first" in out and "memory flat: projector" in out
    assert "disk per task execution: projection" in out
    assert "broker heap MB" in out  # the broker's live heap column (measured where a JDK's jcmd is at hand)


def test_thousand_apps_benchmark_runs():
    out = _smoke("bench_thousand_apps.py")  # services of its own: a fresh SCALEBOX_HOME and free ports
    print(out[-2500:])
    assert "thousand apps: 3 apps run and finished" in out
    for cost in ("broker start s", "broker recovery s", "agent start s", "status s"):
        assert cost in out


def test_state_benchmark_runs(kafka_bootstrap, pg_dsn):
    out = _smoke("bench_state.py", "--kafka", kafka_bootstrap, "--pg", pg_dsn)  # it checks the final values
    print(out[-2500:])
    assert "round trip from inside a task, 200 in-task increment-n calls in a row: p50" in out
    assert "of which the state client's call" in out and "the agent's own transactions" in out
    for goal in ("in-task round trip p50 <= 10 ms", ">= 2000 ops/s, 8 callers, 8 clients",
                 ">= 2000 ops/s, 8 callers, 2 clients"):
        assert goal in out
