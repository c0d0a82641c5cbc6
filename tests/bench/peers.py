"""What the peer benchmarks share: their result, the peers' virtualenv, the availability checks and the summary
rows that hold the engine against the best peer at each concurrency.

Not a benchmark itself; `bench_quix.py`, `bench_celery.py`, `bench_ray.py` and `run_all.py` import it.

Concurrency C means the same for every peer and the engine: C executions of each stage at once (the engine: one
agent per module with C slots; Celery: one prefork worker per stage queue with -c C; Quix Streams: C application
processes per stage; Ray: C units of a per-stage resource).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cpu_account import CpuSnapshot, peer_kind_of, snapshot
from harness import Row

GOAL_RATIO = 2.0
"""The engine's tasks/s against the best peer's at the same concurrency."""
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
PEERS_VENV = Path(os.environ.get("SBX_PEERS_VENV", REPO / ".venv-peers"))
"""Quix Streams and Ray live in a virtualenv of their own: quixstreams pins an older confluent-kafka than the
engine's, and installing it next to the engine would change the engine under test."""


@dataclass
class PeerResult:
    """One peer's run at one concurrency."""

    peer: str              # quix, celery-redis, celery-pg, ray
    slots: int             # concurrency per stage
    pipelines: int
    executions: int        # 2 per pipeline: both stages count, as in bench_engine
    wall_s: float          # first send -> the last pipeline's stage b seen done (durably, where the peer offers it)
    rate: float            # executions / wall_s
    startup_s: float       # processes started -> warm-up done
    config: str            # how the peer was set up, printed next to its number
    send_s: float = 0.0    # how long the driver took to send the N start tasks
    cpu_ms: float | None = None  # machine CPU (all processes) per task execution over the measured window
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # the same by process kind

    def line(self) -> str:
        """One human-readable line: the number next to the configuration."""
        cpu = "" if self.cpu_ms is None else f", {self.cpu_ms:.2f} ms machine CPU/task"
        if self.cpu_by_kind:
            cpu += " (" + ", ".join(f"{k} {v:.2f}" for k, v in self.cpu_by_kind.items()) + ")"
        return (f"{self.peer:<12} c={self.slots}: {self.rate:7.1f} tasks/s ({self.executions} executions in "
                f"{self.wall_s:.2f}s; sent in {self.send_s:.2f}s; startup {self.startup_s:.1f}s{cpu})\n"
                f"               config: {self.config}")


class CpuMeter:
    """The machine's busy CPU between `start()` and `stop()` per task execution, in all and by process kind
    (cpu_account.peer_kind_of: the peer's processes, redis, postgres, kafka, the driver, the rest)."""

    def __init__(self) -> None:
        self.begin = self.end = CpuSnapshot({}, 0.0, 0.0)

    def start(self) -> None:
        self.begin = snapshot(peer_kind_of)

    def stop(self) -> None:
        self.end = snapshot(peer_kind_of)

    def ms_per_task(self, tasks: int) -> float:
        """Busy CPU ms per task execution, the whole machine."""
        return (self.end.busy_s - self.begin.busy_s) * 1e3 / max(1, tasks)

    def by_kind(self, tasks: int) -> dict[str, float]:
        """CPU ms per task execution by process kind (processes that ended meanwhile are not counted)."""
        kinds = sorted(set(self.begin.by_kind) | set(self.end.by_kind))
        out = {k: (self.end.by_kind.get(k, 0.0) - self.begin.by_kind.get(k, 0.0)) * 1e3 / max(1, tasks)
               for k in kinds}
        return {k: round(v, 2) for k, v in out.items() if v >= 0.005}


def peers_python() -> Path:
    """The interpreter of the peers' virtualenv."""
    return PEERS_VENV / "bin" / "python"


def _in_peers_venv(module: str) -> bool:
    python = peers_python()
    if not python.exists():
        return False
    site = list((PEERS_VENV / "lib").glob(f"python*/site-packages/{module}"))
    return bool(site)


def peer_version(dist: str) -> str:
    """The version of a distribution installed in the peers' virtualenv, from its dist-info directory's name."""
    found = sorted((PEERS_VENV / "lib").glob(f"python*/site-packages/{dist}-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").rsplit("-", 1)[-1] if found else "?"


def quix_missing() -> str | None:
    """None if Quix Streams can run, else why not."""
    if not _in_peers_venv("quixstreams"):
        return f"quixstreams not installed in {PEERS_VENV}"
    return None


def ray_missing() -> str | None:
    """None if Ray can run, else why not."""
    if not _in_peers_venv("ray"):
        return f"ray not installed in {PEERS_VENV} (the full install only: .ci/install-bench-deps.sh --ray)"
    return None


def celery_missing() -> str | None:
    """None if the Celery benchmarks can run, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not installed"
    for module in ("celery", "redis", "sqlalchemy"):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed in {sys.prefix}"
    return None


def best_by_slots(results: list[PeerResult]) -> dict[int, PeerResult]:
    """The fastest peer at each concurrency."""
    best: dict[int, PeerResult] = {}
    for r in results:
        if r.slots not in best or r.rate > best[r.slots].rate:
            best[r.slots] = r
    return best


def rows(results: list[PeerResult], engine: dict[int, float]) -> list[Row]:
    """Summary rows: the engine against each peer (informational), then against the best peer per concurrency."""
    out = [Row(f"engine vs {r.peer}, c={r.slots}", engine[r.slots], "tasks/s", r.rate, f"{r.peer} tasks/s",
               engine[r.slots] / r.rate, "-", None) for r in results if r.slots in engine]
    for slots, best in sorted(best_by_slots(results).items()):
        e = engine.get(slots)
        if e is None:
            continue
        ratio = e / best.rate
        out.append(Row(f"engine vs best peer, c={slots}", e, "tasks/s", best.rate, f"{best.peer} tasks/s", ratio,
                       f">= {GOAL_RATIO:g}x", ratio >= GOAL_RATIO))
    return out
