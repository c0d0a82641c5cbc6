"""Celery at its best on the engine's two-stage /bin/true pipeline, same machine, same run.

    .ci/install-bench-deps.sh    # once: redis-server, celery[redis,sqlalchemy], py-spy
    .venv/bin/python tests/bench/bench_celery.py [--tasks 2000] [--slots 1,2,4] [--backend redis,pg] [--smoke]

Celery side: a private `redis-server` on a free port as the broker, its writes in an append-only file that reaches
the OS before each reply and is not fsynced (`--appendonly yes --appendfsync no`: the durability of the engine's
Kafka log, which is not fsynced either; `--redis-persistence none` drops it); the result backend
is either that Redis (db 1) or PostgreSQL (`db+postgresql+psycopg://...`, a fresh database
`sbx_bench_celery_<tag>`). One prefork worker per stage queue with `-c C` (the engine runs one agent per module
with C slots), tuned: acks_late with reject_on_worker_lost (a task is acknowledged once done and redelivered if
its process dies, the durability closest to the engine's), worker_prefetch_multiplier 1 and `-O fair` (no task
waits behind a busy child while another is idle). Each task runs /bin/true with subprocess.run; stage a is
chained to stage b (`chain(stage_a.s(i), stage_b.s())`). The driver sends every chain over one producer
connection and does not wait on results one by one: it counts stored results in the backend (SQL count /
Redis DBSIZE). Throughput = task executions (2N) / (first send -> 2N results stored), after a warm-up chain.
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
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote, urlencode

import harness
import peers
import psycopg
import testpath  # noqa: F401  (tests/ on sys.path: `support`)
from harness import say
from peers import PeerResult
from support import verify

BENCH_DIR = Path(__file__).resolve().parent
BACKENDS = ("redis", "pg")
PERSISTENCE = {"aof": ["--appendonly", "yes", "--appendfsync", "no"], "none": ["--appendonly", "no"]}
"""Redis persistence: `aof` writes every command to the append-only file before the reply, without fsync, as the
Kafka broker appends to its log (no fsync either); `none` keeps everything in memory only."""
PREFETCH = 1
OPTIMIZATION = "fair"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlalchemy_url(dsn: str) -> str:
    """A psycopg DSN (URL or key=value) as Celery's `db+postgresql+psycopg://` result backend URL; its other
    parameters (the secure local pair's `passfile`, `sslmode`) go along as the URL's query."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = quote(str(info.get("user", "postgres")))
    password = f":{quote(str(info['password']))}" if info.get("password") else ""
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    rest = {k: str(v) for k, v in info.items() if k not in ("user", "password", "host", "port", "dbname")}
    query = f"?{urlencode(rest)}" if rest else ""
    return f"db+postgresql+psycopg://{user}{password}@{host}:{port}/{info['dbname']}{query}"


class CeleryStack:
    """A private redis-server, the result backend (Redis db 1 or a PostgreSQL database) and the Celery workers;
    `close()` stops everything."""

    def __init__(self, pg: str, backend: str = "pg", persistence: str = "aof") -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run .ci/install-bench-deps.sh")
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: one of {BACKENDS}")
        self.pg = pg
        self.backend = backend
        self.persistence = persistence
        self.tag = harness.tag()
        self.workdir = harness.bench_dir("celery")
        self.port = free_port()
        self.db_name = f"sbx_bench_celery_{self.tag}"
        self.dsn: str | None = None
        self.redis: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}

    def start_services(self) -> None:
        """Redis (waits for PING) and, for the PostgreSQL backend, the result database."""
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *PERSISTENCE[self.persistence], "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        if self.backend == "pg":
            self.dsn = verify.create_database(self.pg, self.db_name)
            backend_url = sqlalchemy_url(self.dsn)
        else:
            backend_url = f"redis://127.0.0.1:{self.port}/1"
        self.env = {"SBX_CELERY_BROKER": f"redis://127.0.0.1:{self.port}/0", "SBX_CELERY_BACKEND": backend_url}

    def app(self):  # noqa: ANN201 - a celery.Celery, imported lazily
        """A driver-side Celery app on this stack's broker and backend (a fresh one: Celery caches both per app)."""
        import celery_app

        return celery_app.make_app(self.env["SBX_CELERY_BROKER"], self.env["SBX_CELERY_BACKEND"])

    def start_workers(self, slots: int, prefetch: int, optimization: str, acks_late: bool) -> None:
        """One prefork worker per stage queue, `slots` processes each."""
        env = {**os.environ, **self.env, "SBX_CELERY_PREFETCH": str(prefetch),
               "SBX_CELERY_ACKS_LATE": "1" if acks_late else "0",
               "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
        for queue in ("sbx_a", "sbx_b"):
            log = open(self.workdir / f"worker-{queue}-{slots}.log", "ab")  # noqa: SIM115
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", queue, "-c", str(slots),
                 "-P", "prefork", "-O", optimization, "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"{queue}-{self.tag}-{slots}@%h", "-l", "WARNING"],
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

    def _results_redis(self):  # noqa: ANN202 - a redis.Redis, imported lazily
        import redis

        return redis.Redis(port=self.port, db=1)

    def stored(self, conn: psycopg.Connection | None) -> tuple[int, int]:
        """(results stored, of which FAILURE); in Redis failures are found at the end (`statuses`)."""
        if conn is None:
            return int(self._results_redis().dbsize()), 0
        try:
            row = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'FAILURE') "
                               "FROM celery_taskmeta").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
        return int(row[0]), int(row[1])

    def statuses(self) -> dict[str, int]:
        """Status -> number of stored results."""
        if self.dsn is not None:
            with psycopg.connect(self.dsn) as conn:
                return dict(conn.execute("SELECT status, count(*) FROM celery_taskmeta GROUP BY 1").fetchall())
        r = self._results_redis()
        out: dict[str, int] = {}
        keys = list(r.scan_iter(match="celery-task-meta-*", count=1000))
        for value in (r.mget(keys) if keys else []):
            status = json.loads(value)["status"] if value else "MISSING"
            out[status] = out.get(status, 0) + 1
        return out

    def wait(self, expected: int, timeout_s: float) -> float:
        """Wait until `expected` results are stored, then check they all are SUCCESS; time.time() when seen."""
        deadline = time.monotonic() + timeout_s
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(psycopg.connect(self.dsn, autocommit=True)) if self.dsn else None
            while True:
                stored, failed = self.stored(conn)
                if failed:
                    raise RuntimeError(f"{failed} Celery task(s) failed; logs in {self.workdir}")
                if stored >= expected:
                    seen = time.time()
                    break
                self.check_workers()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Celery: {stored}/{expected} results after {timeout_s:.0f}s; "
                                       f"logs in {self.workdir}")
                time.sleep(0.05)
        statuses = self.statuses()
        if set(statuses) != {"SUCCESS"}:
            raise RuntimeError(f"Celery results not all SUCCESS: {statuses}; logs in {self.workdir}")
        return seen

    def reset_results(self) -> None:
        """Empty the results and the broker between runs."""
        if self.dsn is not None:
            with psycopg.connect(self.dsn, autocommit=True) as conn, \
                    contextlib.suppress(psycopg.errors.UndefinedTable):
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
                if self.dsn is not None:
                    with contextlib.suppress(psycopg.Error):
                        verify.drop_database(self.pg, self.db_name)
                if not keep_logs:
                    shutil.rmtree(self.workdir, ignore_errors=True)


def config_text(stack: CeleryStack, slots: int, prefetch: int, optimization: str, acks_late: bool) -> str:
    """The configuration printed next to the number."""
    import celery

    result = "Redis db 1" if stack.backend == "redis" else "PostgreSQL (SQLAlchemy, psycopg 3)"
    persistence = ("append-only file, appendfsync no" if stack.persistence == "aof" else "in memory only")
    return (f"celery {celery.__version__}, prefork -c {slots} per stage queue, -O {optimization}, "
            f"prefetch_multiplier={prefetch}, acks_late={acks_late} (+reject_on_worker_lost), rate limits off, "
            "no gossip/mingle/heartbeat, "
            f"broker: private Redis ({persistence}), results: {result}, chain(stage_a, stage_b), JSON")


def run_celery(stack: CeleryStack, slots: int, n: int, prefetch: int = PREFETCH,
               optimization: str = OPTIMIZATION, acks_late: bool = True) -> PeerResult:
    """Workers with `slots`, a warm-up chain, then N chains; the workers are stopped afterwards."""
    import celery_app
    from celery import chain

    app = stack.app()

    def pipeline(i: int):  # noqa: ANN202 - a celery chain
        return chain(app.signature(celery_app.STAGE_A, args=(i,)), app.signature(celery_app.STAGE_B))

    stack.reset_results()
    started = time.time()
    stack.start_workers(slots, prefetch, optimization, acks_late)
    try:
        pipeline(-1).apply_async()
        stack.wait(2, timeout_s=120)
        startup_s = time.time() - started
        stack.reset_results()
        cpu = peers.CpuMeter()
        cpu.start()
        first_send = time.time()
        with app.producer_or_acquire() as producer:
            for i in range(n):
                pipeline(i).apply_async(producer=producer)
        send_s = time.time() - first_send
        seen = stack.wait(2 * n, timeout_s=max(180.0, n / 5))
        cpu.stop()
    finally:
        stack.stop_workers()
        app.close()
    wall_s = seen - first_send
    return PeerResult(f"celery-{stack.backend}", slots, n, 2 * n, wall_s, 2 * n / wall_s, startup_s,
                      config_text(stack, slots, prefetch, optimization, acks_late), send_s,
                      cpu.ms_per_task(2 * n), cpu.by_kind(2 * n))


def run(tasks: int, slots: list[int], pg: str, backends: tuple[str, ...] = BACKENDS, prefetch: int = PREFETCH,
        optimization: str = OPTIMIZATION, acks_late: bool = True, persistence: str = "aof") -> list[PeerResult]:
    """For each backend: one redis and result store, one Celery run per concurrency (each printed)."""
    results = []
    for backend in backends:
        stack = CeleryStack(pg, backend, persistence)
        ok = False
        try:
            stack.start_services()
            for s in slots:
                say(f"  machine {harness.wait_until_idle(timeout_s=10)}")
                result = run_celery(stack, s, tasks, prefetch, optimization, acks_late)
                say("  " + result.line())
                results.append(result)
            ok = True
        finally:
            stack.close(keep_logs=not ok)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--backend", default=",".join(BACKENDS), help="result backends: redis, pg or both")
    parser.add_argument("--prefetch", type=int, default=PREFETCH, help="worker_prefetch_multiplier")
    parser.add_argument("--optimization", choices=("fair", "default"), default=OPTIMIZATION, help="worker -O")
    parser.add_argument("--early-ack", action="store_true", help="Celery's default early ack instead of acks_late")
    parser.add_argument("--redis-persistence", choices=tuple(PERSISTENCE), default="aof",
                        help="the Redis broker's: an append-only file without fsync (as Kafka's log), or none")
    parser.add_argument("--smoke", action="store_true", help="200 chains, concurrency 2")
    parser.add_argument("--json", action="store_true")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks, args.slots = 200, [2]
    missing = peers.celery_missing()
    if missing:
        say(f"SKIPPED: {missing} (run .ci/install-bench-deps.sh)")
        return 0
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        say(f"load average before: {harness.load_average()}")
        results = run(args.tasks, args.slots, args.pg, tuple(args.backend.split(",")), args.prefetch,
                      args.optimization, not args.early_ack, args.redis_persistence)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
