"""The Ray side of bench_ray.py, run in the peers' virtualenv: a local Ray instance, a warm-up, then N pipelines;
prints one JSON line with the numbers.

    .venv-peers/bin/python tests/bench/ray_app.py --slots 2 --tasks 2000 --temp-dir /tmp/sbx-bench-ray-x

Stage a is a task that runs /bin/true in a subprocess; stage b runs /bin/true. `--chain driver` (the default)
submits `stage_b.remote(stage_a.remote(i))` from the driver: Ray starts stage b once stage a's result exists;
`--chain nested` has stage a submit stage b itself and return its reference. Concurrency C per stage: Ray gets
2C CPUs and the custom resources stage_a=C and stage_b=C, and each task takes one CPU and one unit of its stage's
resource. The driver submits N pipelines, then waits for every stage-b result. Ray keeps tasks and results in
memory (no durability); the dashboard is off and the object store is small. Ray is shut down on the way out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import ray
from cpu_account import peer_kind_of, snapshot


def spawn(i: int) -> None:
    """The task's work: /bin/true with the body and headers as arguments, like the other stages."""
    subprocess.run(["/bin/true", str(i), "{}"], check=True)


@ray.remote(num_cpus=1, resources={"stage_b": 1})
def stage_b(i: int) -> int:
    """Stage b: run /bin/true."""
    spawn(i)
    return i


@ray.remote(num_cpus=1, resources={"stage_a": 1})
def stage_a(i: int) -> int:
    """Stage a: run /bin/true; its result is stage b's argument."""
    spawn(i)
    return i


@ray.remote(num_cpus=1, resources={"stage_a": 1})
def stage_a_nested(i: int) -> ray.ObjectRef:
    """Stage a that submits stage b itself after running /bin/true; returns stage b's reference."""
    spawn(i)
    return stage_b.remote(i)


def submit(first: int, n: int, chain: str) -> list[ray.ObjectRef]:
    """Submit n pipelines; the references to wait for (stage b's, or stage a's that return stage b's)."""
    if chain == "driver":
        return [stage_b.remote(stage_a.remote(first + i)) for i in range(n)]
    return [stage_a_nested.remote(first + i) for i in range(n)]


def wait(refs: list[ray.ObjectRef], chain: str) -> None:
    """Wait until every stage b finished."""
    results = ray.get(refs)
    if chain == "nested":
        ray.get(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--chain", choices=("driver", "nested"), default="driver")
    args = parser.parse_args(argv)
    c = args.slots
    started = time.time()
    ray.init(num_cpus=2 * c, resources={"stage_a": c, "stage_b": c}, include_dashboard=False,
             object_store_memory=100 * 1024 * 1024, _temp_dir=args.temp_dir, log_to_driver=False,
             configure_logging=False)
    try:
        wait(submit(-10 * c, 4 * c, args.chain), args.chain)  # warm-up: every worker process started and used
        startup_s = time.time() - started
        begin = snapshot(peer_kind_of)
        first_send = time.time()
        refs = submit(0, args.tasks, args.chain)
        send_s = time.time() - first_send
        wait(refs, args.chain)
        seen = time.time()
        end = snapshot(peer_kind_of)
    finally:
        ray.shutdown()
    wall_s = seen - first_send
    tasks = 2 * args.tasks
    by_kind = {k: round((v - begin.by_kind.get(k, 0.0)) * 1e3 / tasks, 2) for k, v in end.by_kind.items()}
    print(json.dumps({"wall_s": wall_s, "send_s": send_s, "startup_s": startup_s,
                      "cpu_ms": (end.busy_s - begin.busy_s) * 1e3 / tasks,
                      "cpu_by_kind": {k: v for k, v in by_kind.items() if v >= 0.005}, "ray": ray.__version__}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
