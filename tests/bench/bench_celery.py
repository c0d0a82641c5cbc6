"""The peer comparison: the engine's two-stage no-op pipeline on Celery, same machine, same run.

    .ci/install-bench-deps.sh    # once: redis-server, celery[redis,sqlalchemy], py-spy
    .venv/bin/python tests/bench/bench_celery.py [--tasks 2000] [--slots 2] [--smoke]

Celery side: a private `redis-server --save '' --appendonly no` on a free port as the broker, the PostgreSQL
result backend (`db+postgresql+psycopg://...`, a fresh database `sbx_bench_celery_<tag>`), and one prefork
worker per stage queue with `-c SLOTS` (the engine runs one agent per module with SLOTS slots; both sides get
the same concurrency per stage). Each task runs /bin/true with subprocess.run; stage a is chained to stage b
(`chain(stage_a.s(i), stage_b.s())`). Throughput = task executions (2N) / (first send -> every result
SUCCESS in PostgreSQL), after a warm-up chain. The engine is run with the same N and slots (bench_engine),
unless run_all.py passes its numbers. Goal: engine >= 1.5x Celery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import harness
import psycopg
import testpath  # noqa: F401  (tests/ on sys.path: `support`)
from harness import Row, say
from support import verify

GOAL_RATIO = 1.5
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class CeleryResult:
    """One Celery run."""

    slots: int
    pipelines: int
    executions: int
    wall_s: float
    rate: float            # executions / wall_s
    backend_s: float       # first send -> last date_done
    backend_rate: float
    startup_s: float       # workers started -> warm-up chain stored


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlalchemy_url(dsn: str) -> str:
    """A psycopg DSN (URL or key=value) as Celery's `db+postgresql+psycopg://` result backend URL."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = quote(str(info.get("user", "postgres")))
    password = f":{quote(str(info['password']))}" if info.get("password") else ""
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    return f"db+postgresql+psycopg://{user}{password}@{host}:{port}/{info['dbname']}"


class CeleryStack:
    """A private redis-server, a result database and the Celery workers; `close()` stops everything."""

    def __init__(self, pg: str) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run .ci/install-bench-deps.sh")
        self.pg = pg
        self.tag = harness.tag()
        self.workdir = harness.bench_dir("celery")
        self.port = free_port()
        self.db_name = f"sbx_bench_celery_{self.tag}"
        self.dsn: str | None = None
        self.redis: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def start_services(self) -> None:
        """Redis (waits for PING) and the result database."""
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        import redis

        while True:
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError as exc:
                if self.redis.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.workdir / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {log_text}") from exc
                time.sleep(0.1)
        self.dsn = verify.create_database(self.pg, self.db_name)
        os.environ["SBX_CELERY_BROKER"] = f"redis://127.0.0.1:{self.port}/0"
        os.environ["SBX_CELERY_BACKEND"] = sqlalchemy_url(self.dsn)

    def start_workers(self, slots: int) -> None:
        """One prefork worker per stage queue, `slots` processes each."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
        for queue in ("sbx_a", "sbx_b"):
            log = open(self.workdir / f"worker-{queue}-{slots}.log", "ab")  # noqa: SIM115
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", queue, "-c", str(slots),
                 "-P", "prefork", "-n", f"{queue}-{self.tag}-{slots}@%h", "-l", "WARNING"],
                cwd=BENCH_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
            log.close()

    def stop_workers(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of each worker's process group."""
        for proc in self.workers:
            harness.stop_process_group(proc, grace_s=15)
        self.workers = []

    def check_workers(self) -> None:
        """Raise if a worker died."""
        for proc in self.workers:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in self.workdir.glob("worker-*.log"))
                raise RuntimeError(f"a Celery worker exited with code {proc.returncode}:\n{logs}")

    def counts(self, conn: psycopg.Connection) -> tuple[int, int]:
        """(SUCCESS, FAILURE) rows in the result table (0, 0 before the workers create it)."""
        try:
            row = conn.execute("SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                               "count(*) FILTER (WHERE status = 'FAILURE') FROM celery_taskmeta").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
        return int(row[0]), int(row[1])

    def wait(self, expected: int, timeout_s: float) -> float:
        """Wait until `expected` results are SUCCESS; time.time() when seen."""
        assert self.dsn is not None
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                ok, failed = self.counts(conn)
                if failed:
                    raise RuntimeError(f"{failed} Celery task(s) failed; logs in {self.workdir}")
                if ok >= expected:
                    return time.time()
                self.check_workers()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Celery: {ok}/{expected} results after {timeout_s:.0f}s; "
                                       f"logs in {self.workdir}")
                time.sleep(0.1)

    def reset_results(self) -> None:
        """Empty the result table and the broker between runs."""
        assert self.dsn is not None
        with psycopg.connect(self.dsn, autocommit=True) as conn, contextlib.suppress(psycopg.errors.UndefinedTable):
            conn.execute("TRUNCATE celery_taskmeta")
        import redis

        redis.Redis(port=self.port).flushall()

    def close(self, keep_logs: bool = False) -> None:
        """Stop workers and redis, drop the database; the logs are removed unless `keep_logs`."""
        try:
            self.stop_workers()
        finally:
            try:
                if self.redis is not None:
                    harness.stop_process_group(self.redis, grace_s=5)
            finally:
                with contextlib.suppress(psycopg.Error):
                    verify.drop_database(self.pg, self.db_name)
                if not keep_logs:
                    shutil.rmtree(self.workdir, ignore_errors=True)


def run_celery(stack: CeleryStack, slots: int, n: int) -> CeleryResult:
    """Workers with `slots`, a warm-up chain, then N chains; the workers are stopped afterwards."""
    import celery_app
    from celery import chain

    stack.reset_results()
    started = time.time()
    stack.start_workers(slots)
    try:
        chain(celery_app.stage_a.s(-1), celery_app.stage_b.s()).apply_async()
        stack.wait(2, timeout_s=120)
        startup_s = time.time() - started
        stack.reset_results()
        first_send = time.time()
        for i in range(n):
            chain(celery_app.stage_a.s(i), celery_app.stage_b.s()).apply_async()
        seen = stack.wait(2 * n, timeout_s=max(180.0, n / 5))
    finally:
        stack.stop_workers()
    assert stack.dsn is not None
    with psycopg.connect(stack.dsn) as conn:
        last_done = conn.execute("SELECT extract(epoch FROM max(date_done))::float8 FROM celery_taskmeta").fetchone()[0]
    wall_s, backend_s = seen - first_send, last_done - first_send
    return CeleryResult(slots, n, 2 * n, wall_s, 2 * n / wall_s, backend_s, 2 * n / backend_s, startup_s)


def report(r: CeleryResult) -> None:
    """Print one Celery run."""
    say(f"\n== celery, -c {r.slots} per stage: {r.pipelines} chains = {r.executions} task executions")
    say(f"  first send -> all SUCCESS in PostgreSQL: {r.wall_s:6.2f}s = {r.rate:7.1f} tasks/s; "
        f"by date_done: {r.backend_s:.2f}s = {r.backend_rate:.1f} tasks/s (startup {r.startup_s:.1f}s)")


def rows(celery: list[CeleryResult], engine: dict[int, float]) -> list[Row]:
    """Summary rows: engine tasks/s against Celery's at the same concurrency."""
    out = []
    for c in celery:
        e = engine.get(c.slots)
        if e is None:
            continue
        out.append(Row(f"engine vs celery, slots={c.slots}", e, "tasks/s", c.rate, "celery tasks/s", e / c.rate,
                       f">= {GOAL_RATIO}x", e / c.rate >= GOAL_RATIO))
    return out


def run(tasks: int, slots: list[int], pg: str) -> list[CeleryResult]:
    """One Celery run per slot count, on one redis and one result database."""
    stack = CeleryStack(pg)
    ok = False
    try:
        stack.start_services()
        results = []
        for s in slots:
            result = run_celery(stack, s, tasks)
            report(result)
            results.append(result)
        ok = True
        return results
    finally:
        stack.close(keep_logs=not ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--slots", type=harness.parse_ints, default=[2], help="e.g. 1,2,4")
    parser.add_argument("--smoke", action="store_true", help="200 chains, slots 2")
    parser.add_argument("--json", action="store_true")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks, args.slots = 200, [2]
    import bench_engine

    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        say(f"load average before: {harness.load_average()}")
        celery = run(args.tasks, args.slots, args.pg)
        engine = {}
        for s in args.slots:
            e = bench_engine.run_engine(s, args.tasks, args.kafka, args.pg, max_seconds=180.0)
            bench_engine.report_short(e)
            engine[s] = e.rate
    harness.print_table(rows(celery, engine), "engine vs celery")
    if args.json:
        print(json.dumps({"celery": [asdict(c) for c in celery], "engine": engine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
