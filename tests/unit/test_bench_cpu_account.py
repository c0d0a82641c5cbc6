"""The engine benchmark's CPU accounting: process kinds and per-task CPU over a window."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import cpu_account  # noqa: E402
from cpu_account import CpuSnapshot, kind_of, window  # noqa: E402


def test_processes_are_grouped_by_what_they_run():
    assert kind_of("/usr/bin/java -Xmx768m -cp /x/* kafka.Kafka /x/server.properties") == "kafka"
    assert kind_of(".venv/bin/python -m scalebox_stream.cli.main agent --app a --module b") == "agent"
    assert kind_of(".venv/bin/python tests/bench/private_projector.py --kafka k") == "projector"
    assert kind_of("postgres: postgres scalebox 127.0.0.1(5432) idle") == "postgres"
    assert kind_of("python tests/bench/bench_engine.py") == "other"


def test_a_window_is_cpu_per_task_with_the_machine_busy_share():
    start = CpuSnapshot({"agent": 1.0, "kafka": 2.0}, busy_s=10.0, total_s=20.0)
    end = CpuSnapshot({"agent": 3.0, "agent children": 1.0, "kafka": 3.0}, busy_s=14.0, total_s=25.0)
    w = window(start, end, tasks=1000)
    assert w.ms_per_task["agent"] == 2.0 and w.ms_per_task["agent children"] == 1.0
    assert w.ms_per_task["kafka"] == 1.0 and w.ms_per_task["postgres"] == 0.0
    assert w.machine_ms_per_task == 4.0 and w.busy_pct == 80.0
    assert "4.00 ms of machine CPU per task (80% busy)" in w.line()


def test_a_snapshot_of_this_machine_sees_this_process():
    snap = cpu_account.snapshot()
    assert snap.total_s >= snap.busy_s > 0
    assert snap.by_kind.get("other", 0.0) > 0


def test_peer_processes_are_grouped_by_peer():
    from cpu_account import peer_kind_of

    assert peer_kind_of("postgres: postgres sbx_bench_celery_ab12 127.0.0.1(5432) idle") == "postgres"
    assert peer_kind_of(".venv/bin/python -m celery -A celery_app worker -Q sbx_a -c 2") == "celery"
    assert peer_kind_of("redis-server 127.0.0.1:40000") == "redis"
    assert peer_kind_of(".venv-peers/bin/python tests/bench/quix_app.py --stage a") == "quix"
    assert peer_kind_of("/x/site-packages/ray/core/src/ray/raylet/raylet --node_id=1") == "ray"
    assert peer_kind_of(".venv/bin/python tests/bench/run_all.py --smoke") == "driver"


def test_a_warm_up_has_settled_when_two_runs_in_a_row_agree():
    assert not cpu_account.settled(None, 0.3)
    assert not cpu_account.settled(0.0, 0.3)
    assert not cpu_account.settled(1.2, 0.4)  # still warming: the JIT's work shows in the broker's CPU
    assert cpu_account.settled(0.40, 0.35) and cpu_account.settled(0.35, 0.40)
    assert not cpu_account.settled(0.40, 0.30)
