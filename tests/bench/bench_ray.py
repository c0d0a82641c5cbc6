"""The two-stage /bin/true pipeline as Ray tasks that spawn the program (ray_app.py, in the peers' virtualenv).

    .ci/install-bench-deps.sh --ray    # once: ray in .venv-peers (a large wheel, so not in the smoke install)
    .venv/bin/python tests/bench/bench_ray.py [--tasks 2000] [--slots 1,2,4] [--smoke]

Each concurrency runs a fresh local Ray instance (`ray.init(num_cpus=2C, resources={stage_a: C, stage_b: C},
include_dashboard=False)`, a 100 MB object store, its session files in a private temp dir), shut down
afterwards; its whole process group is killed if it outlives the run. Throughput = 2N task executions / (first
submit -> every stage b result back), after a warm-up of 4C pipelines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import harness
import peers
from harness import say
from peers import PeerResult

CHAINS = {"driver": "the driver submits stage_b.remote(stage_a.remote(i))",
          "nested": "stage a submits stage b itself and returns its reference"}


def config_text(slots: int, version: str, chain: str) -> str:
    """The configuration printed next to the number."""
    return (f"ray {version}, local, ray.init(num_cpus={2 * slots}, resources stage_a={slots} stage_b={slots}), "
            f"each task subprocess.run(/bin/true), {CHAINS[chain]}; results in memory (no durability)")


def run_ray(slots: int, n: int, chain: str = "driver") -> PeerResult:
    """One local Ray instance: warm-up, N pipelines; the instance is gone afterwards."""
    # Ray's session path must stay short (a Unix socket lives in it), hence /tmp and not bench_dir's name.
    temp = Path(tempfile.mkdtemp(prefix="sbx-ray-", dir="/tmp"))
    log = temp / "driver.log"
    ok = False
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(peers.peers_python()), str(peers.BENCH_DIR / "ray_app.py"), "--slots",
                                     str(slots), "--tasks", str(n), "--temp-dir", str(temp / "ray"), "--chain", chain],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out,
                                    start_new_session=True, cwd=peers.BENCH_DIR)
        try:
            stdout, _ = proc.communicate(timeout=max(300.0, n / 5))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"Ray run did not finish; log in {log}") from None
        finally:
            harness.stop_process_group(proc, grace_s=5)
        lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"Ray run failed (exit code {proc.returncode}): "
                               f"{log.read_text(errors='replace')[-3000:]}")
        data = json.loads(lines[-1])
        ok = True
        return PeerResult("ray", slots, n, 2 * n, data["wall_s"], 2 * n / data["wall_s"], data["startup_s"],
                          config_text(slots, data["ray"], chain), data["send_s"], data["cpu_ms"],
                          data.get("cpu_by_kind", {}))
    finally:
        if ok:
            shutil.rmtree(temp, ignore_errors=True)
        else:
            say(f"  Ray logs kept in {temp}")


def run(tasks: int, slots: list[int], chain: str = "driver") -> list[PeerResult]:
    """One Ray run per concurrency, each printed with its configuration."""
    results = []
    for s in slots:
        say(f"  machine {harness.wait_until_idle(timeout_s=10)}")
        started = time.monotonic()
        result = run_ray(s, tasks, chain)
        say("  " + result.line() + f"\n               (Ray start and stop included: {time.monotonic() - started:.0f}s)")
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--chain", choices=tuple(CHAINS), default="driver", help="how stage b follows stage a")
    parser.add_argument("--smoke", action="store_true", help="200 pipelines, concurrency 2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks, args.slots = 200, [2]
    missing = peers.ray_missing()
    if missing:
        say(f"SKIPPED: {missing}")
        return 0
    with harness.sigterm_as_interrupt():
        results = run(args.tasks, args.slots, args.chain)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
