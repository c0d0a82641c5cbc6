"""Where a benchmark window's CPU went: every process on the machine, read from /proc at the window's start
and end, grouped by kind (the agents, what they spawned, the broker, the projector, PostgreSQL, the rest).

Not a benchmark itself; `bench_engine.py` uses it. Linux only: elsewhere it reports nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
KINDS = ("agent", "agent children", "kafka", "projector", "postgres", "other")


def kind_of(cmdline: str) -> str:
    """The kind of a process, from its command line."""
    if "kafka.Kafka" in cmdline:
        return "kafka"
    if "projector" in cmdline:
        return "projector"
    if "scalebox_stream.cli.main agent" in cmdline:
        return "agent"
    if "postgres" in cmdline:
        return "postgres"
    return "other"


def peer_kind_of(cmdline: str) -> str:
    """The kind of a process during a peer benchmark (what it spawned counts with it)."""
    # postgres first: a backend process's command line names its database, e.g. sbx_bench_celery_<tag>
    for marker, kind in (("postgres", "postgres"), ("kafka.Kafka", "kafka"), ("redis-server", "redis"),
                         ("celery", "celery"), ("quix_app", "quix"), ("ray", "ray"), ("tests/bench/", "driver")):
        if marker in cmdline:
            return kind
    return "other"


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far, by kind, and the machine's busy and total CPU seconds."""

    by_kind: dict[str, float]
    busy_s: float
    total_s: float


def machine_cpu() -> tuple[float, float]:
    """The machine's busy and total CPU seconds so far (idle and iowait are not busy), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) * TICK_S, sum(ticks) * TICK_S


def snapshot(kind_fn: Callable[[str], str] = kind_of) -> CpuSnapshot:
    """Per-kind CPU (a process's own; what agents spawned and reaped counts as "agent children"), and the
    machine's busy and total CPU time; empty where /proc is missing. `kind_fn` names a process's kind from its
    command line."""
    by_kind: Counter[str] = Counter()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        busy_s, total_s = machine_cpu()
    except OSError:
        return CpuSnapshot({}, 0.0, 0.0)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        kind = kind_fn(cmdline)
        by_kind[kind] += (int(fields[11]) + int(fields[12])) * TICK_S
        children = (int(fields[13]) + int(fields[14])) * TICK_S
        by_kind["agent children" if kind == "agent" else kind] += children
    return CpuSnapshot(dict(by_kind), busy_s, total_s)


@dataclass(frozen=True)
class CpuWindow:
    """CPU between two snapshots, per task execution."""

    ms_per_task: dict[str, float]
    machine_ms_per_task: float
    busy_pct: float

    def line(self) -> str:
        """One human-readable line."""
        parts = "  ".join(f"{k} {self.ms_per_task.get(k, 0.0):.2f}" for k in KINDS)
        return f"{self.machine_ms_per_task:.2f} ms of machine CPU per task ({self.busy_pct:.0f}% busy): {parts}"


def settled(previous_ms: float | None, current_ms: float, tolerance: float = 0.2) -> bool:
    """Whether a warming process has settled: its CPU per task in the latest run (`current_ms`) is within
    `tolerance` of the run before (`previous_ms`; None: there was none)."""
    if previous_ms is None or previous_ms <= 0:
        return False
    return abs(current_ms - previous_ms) <= tolerance * previous_ms


def window(start: CpuSnapshot, end: CpuSnapshot, tasks: int) -> CpuWindow:
    """CPU per task execution between two snapshots (processes that ended meanwhile are not counted)."""
    tasks = max(1, tasks)
    per = {k: max(0.0, end.by_kind.get(k, 0.0) - start.by_kind.get(k, 0.0)) * 1e3 / tasks for k in KINDS}
    total = end.total_s - start.total_s
    busy = end.busy_s - start.busy_s
    return CpuWindow(per, busy * 1e3 / tasks, 100.0 * busy / total if total > 0 else 0.0)
