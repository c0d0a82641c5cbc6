"""Per-task container cost: the docker executors against the raw Docker CLI, measured in one run.

    python tests/bench/bench_containers.py [--runs N] [--smoke] [--image IMAGE] [--json]

Two pairs, each interleaved (raw, executor, raw, executor...) after a warm-up, all running `true`:
- slot mode: `docker exec <running container> true` (CLI) vs `DockerSlotExecutor.run` of `/bin/true`
  in its already started slot container (goal: <= 1.2x);
- task mode: `docker run --rm --network none <image> true` (CLI) vs `DockerExecutor.run` (goal: <= 1.1x).
Prints median and mean milliseconds per task and the executor/raw ratios of the medians. `--smoke`: 5
runs (under a minute). Needs dockerd and the local `scalebox/base:busybox` image
(`.ci/build-images.sh`). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from scalebox_stream.executors.base import ExecRequest
from scalebox_stream.executors.docker import DockerExecutor
from scalebox_stream.executors.docker_slots import DockerSlotExecutor

GOALS = {"slot": 1.2, "task": 1.1}
WARMUP = 3


class Bench:
    """Requests for the executors, each with a fresh work dir under one temporary root."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.root = Path(tempfile.mkdtemp(prefix="sbx-bench-"))
        self.tag = uuid.uuid4().hex[:8]

    def request(self, slot: int = 0) -> ExecRequest:
        work = self.root / uuid.uuid4().hex[:12]
        work.mkdir()
        return ExecRequest(argv=["/bin/true"], env={"APP": "bench"}, work_dir=work,
                           name=f"sbx-bench-{self.tag}-{uuid.uuid4().hex[:12]}", image=self.image, slot=slot,
                           labels={"scalebox.app": f"bench-{self.tag}", "scalebox.module": "true",
                                   "scalebox.agent": f"bench-{self.tag}"})


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _cli(*args: str) -> Callable[[], None]:
    def call() -> None:
        subprocess.run(["docker", *args], check=True, capture_output=True)
    return call


def _executor_call(executor: DockerExecutor | DockerSlotExecutor, bench: Bench) -> Callable[[], None]:
    def call() -> None:
        result = executor.run(bench.request(), lambda _cid: None)
        if result.exit_code != 0:
            raise RuntimeError(f"{type(executor).__name__}: exit {result.exit_code}: {result.error}")
    return call


def interleaved(raw: Callable[[], None], ours: Callable[[], None], runs: int) -> tuple[list[float], list[float]]:
    """Times `raw` and `ours` alternately, `runs` times each, after a warm-up of both."""
    for _ in range(WARMUP):
        raw()
        ours()
    raw_ms, ours_ms = [], []
    for _ in range(runs):
        raw_ms.append(_timed(raw))
        ours_ms.append(_timed(ours))
    return raw_ms, ours_ms


def bench_slot(bench: Bench, runs: int) -> tuple[list[float], list[float]]:
    """`docker exec` into a running container vs the slot executor's per-task cost."""
    name = f"sbx-bench-exec-{bench.tag}"
    subprocess.run(["docker", "run", "-d", "--rm", "--init", "--network", "none", "--name", name, bench.image,
                    "sleep", "2147483647"], check=True, capture_output=True)
    executor = DockerSlotExecutor()
    try:
        return interleaved(_cli("exec", name, "true"), _executor_call(executor, bench), runs)
    finally:
        executor.close()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def bench_task(bench: Bench, runs: int) -> tuple[list[float], list[float]]:
    """`docker run --rm` vs the container-per-task executor."""
    executor = DockerExecutor()
    try:
        return interleaved(_cli("run", "--rm", "--network", "none", bench.image, "true"),
                           _executor_call(executor, bench), runs)
    finally:
        executor.close()


def summary(mode: str, raw: list[float], ours: list[float]) -> dict[str, float | bool | str]:
    ratio = statistics.median(ours) / statistics.median(raw)
    return {"mode": mode, "raw_median_ms": round(statistics.median(raw), 1),
            "raw_mean_ms": round(statistics.mean(raw), 1), "ours_median_ms": round(statistics.median(ours), 1),
            "ours_mean_ms": round(statistics.mean(ours), 1),
            "ratio": round(ratio, 3), "goal": GOALS[mode], "ok": ratio <= GOALS[mode]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="5 runs of each (under a minute)")
    parser.add_argument("--image", default="scalebox/base:busybox")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    runs = 5 if args.smoke else args.runs
    bench = Bench(args.image)
    try:
        rows = [summary("slot", *bench_slot(bench, runs)), summary("task", *bench_task(bench, runs))]
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    labels = {"slot": ("docker exec <running> true", "DockerSlotExecutor /bin/true"),
              "task": ("docker run --rm --network none", "DockerExecutor /bin/true")}
    print(f"{runs} runs each, interleaved, after {WARMUP} warm-up runs; milliseconds per task")
    for row in rows:
        raw_label, ours_label = labels[str(row["mode"])]
        print(f"  {raw_label:32} median {row['raw_median_ms']:7.1f}  mean {row['raw_mean_ms']:7.1f}")
        print(f"  {ours_label:32} median {row['ours_median_ms']:7.1f}  mean {row['ours_mean_ms']:7.1f}"
              f"  ratio {row['ratio']:.2f}x (goal <= {row['goal']}x: {'ok' if row['ok'] else 'MISSED'})")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
