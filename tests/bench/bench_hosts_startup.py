"""Start-up time of an app placed on SSH hosts: from `scalebox run` to its first task running.

    .venv/bin/python tests/bench/bench_hosts_startup.py --kafka K --pg DSN [--runs 5] [--smoke]

Three test hosts (containers with sshd, tests/integration/ssh_hosts.py) and a 3-module app m1 -> m2 -> m3,
module mN on host hN (`slots: [hN:1]`, process executor, each task a `printf` of one child task). Each run
is one `scalebox run APP x` in a child process; start-up = the first task's `started_at` in the projection
minus the moment the command was started (one clock: the hosts are containers on this machine). Also
prints the whole run's wall time. Numbers are reported, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import testpath  # noqa: F401  (puts tests/ on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import psycopg  # noqa: E402
import yaml  # noqa: E402
from ssh_hosts import SshHosts, started_hosts  # noqa: E402

HOSTS = ["h1", "h2", "h3"]
EMIT = "printf '%s-next\\n' \"$1\" > \"$WORK_DIR/sink-tasks.txt\""


def write_app(hosts: SshHosts, directory: Path) -> tuple[Path, str]:
    """The 3-module app, each module on its own host, the cluster inline."""
    name = f"startup-{uuid.uuid4().hex[:8]}"
    modules = {}
    for index, host in enumerate(HOSTS, start=1):
        last = index == len(HOSTS)
        modules[f"m{index}"] = {"command": ["/bin/sh", "-c", "true" if last else EMIT, "stage"],
                                "slots": [f"{host}:1"], **({} if last else {"sink_modules": [f"m{index + 1}"]})}
    app = {"name": name, "modules": modules, "clusters": hosts.cluster_yaml()}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    return path, name


def measure(hosts: SshHosts, directory: Path, kafka: str, pg: str) -> tuple[float, float]:
    """One run: (command to first task running, whole run) in seconds."""
    app_file, name = write_app(hosts, directory)
    env = {**os.environ, "SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg}
    started = datetime.now().astimezone()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", "run", str(app_file), "x"],
                          capture_output=True, text=True, timeout=300, env=env)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"scalebox run failed:\n{proc.stderr[-3000:]}")
    with psycopg.connect(pg, autocommit=True) as conn:
        ((first,),) = conn.execute("SELECT min(started_at) FROM task_runs WHERE app = %s", (name,)).fetchall()
    return (first - started).total_seconds(), wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--pg", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory(prefix="sbx-bench-hosts-") as tmp:
        work = Path(tmp)
        with started_hosts(HOSTS, args.kafka, work, [work]) as hosts:
            results = [measure(hosts, work, args.kafka, args.pg) for _ in range(runs)]
    firsts = [first for first, _ in results]
    walls = [wall for _, wall in results]
    print(f"3 modules on 3 SSH hosts, {runs} run(s): command -> first task running "
          f"median {statistics.median(firsts):.2f}s (min {min(firsts):.2f}s, max {max(firsts):.2f}s); "
          f"whole run median {statistics.median(walls):.2f}s")


if __name__ == "__main__":
    main()
