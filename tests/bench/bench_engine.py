"""Engine overhead: a two-module pipeline of no-op process tasks, driven like production, against the raw
spawn rate of /bin/true measured in the same run.

    .venv/bin/python tests/bench/bench_engine.py [--tasks 2000] [--slots 1,2,4] [--smoke] [--profile]

Stage `a` runs `sh -c 'printf "%s\\n" "$0" > "$WORK_DIR/sink-tasks.txt"'` (one task to `b`), stage `b` runs
`/bin/true`; both with the process executor. For each slot count: deploy a fresh app, start a projector and
one agent per module (child processes, like `scalebox run`), run one warm-up pipeline, publish N start
tasks, wait until all 2N tasks are terminal in the projection. Reports task executions/s end to end (first
publish -> all terminal seen in PostgreSQL) and from the agents' own timestamps (task_runs), the ratio to the
raw serial spawn rate of /bin/true (goal >= 0.6), per-stage percentiles, events per task and the projector's
events/s. `--profile` samples the agents with py-spy during an extra, unmeasured run.

The broker is a long-running JVM: for minutes after a start its JIT compiler is still at work, and it then
spends up to five times the CPU per task it spends warm. Unmeasured runs of `--warm-up` pipelines at slots 4
(default 2000, none in the smoke run) therefore come first, each printing the broker's CPU per task it saw, until
a minute has passed and that figure has settled (see `warm_up_broker`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import linecache
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cpu_account
import harness
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import EMIT_ARGV, TRUE, Deployment, Row, pct, say

from scalebox_stream.kafka.config import admin_config, consumer_config, producer_config
from scalebox_stream.kafka.topics import ensure_topics

GOAL_RATIO = 0.6
GOAL_CPU_MS = 1.5
"""Machine CPU per task execution at slots 4 (every process on the machine, over the measured window)."""
WARMUP = "warmup"
WARM_UP_PIPELINES = 2000
"""Pipelines of each unmeasured run that warms the broker before anything is measured."""
WARM_UP_MIN_S = 60.0
WARM_UP_LIMIT_S = 300.0
"""Warm-up runs repeat until at least WARM_UP_MIN_S have passed and the broker's CPU per task has settled (two runs
in a row within 20 %), or WARM_UP_LIMIT_S have passed."""


@dataclass
class Baseline:
    """Serial spawn rates (per second) measured in this run; `true_subprocess` is the reference."""

    n: int
    true_subprocess: float
    emit_subprocess: float
    true_agent_like: float
    true_posix_spawn: float
    true_fork: float
    executor_true: float | None
    executor_note: str = ""
    kafka_txn: float | None = None        # transactions/s: begin, 1 record, send_offsets, commit (serial)
    kafka_txn_p50_ms: float | None = None
    kafka_txn_fast: float | None = None   # the same with the agent's settings (retry.backoff.ms=1, linger.ms=0)
    kafka_txn_fast_p50_ms: float | None = None
    kafka_txn_idle_p50_ms: float | None = None  # the agent's settings, 50 ms between transactions

    def lines(self) -> list[str]:
        """Human-readable lines."""
        ex = (f"{self.executor_true:8.1f}/s  ProcessExecutor.run(/bin/true) in a loop (no Kafka)"
              if self.executor_true else f"     n/a   ProcessExecutor.run: {self.executor_note}")
        return [f"{self.true_subprocess:8.1f}/s  subprocess.run(['/bin/true'])   <- the baseline",
                f"{self.emit_subprocess:8.1f}/s  subprocess.run(stage a's sh -c printf > sink-tasks.txt)",
                f"{self.true_agent_like:8.1f}/s  Popen(/bin/true) in a new session, env, cwd, output through pipes",
                f"{self.true_posix_spawn:8.1f}/s  os.posix_spawn(/bin/true) + waitpid",
                f"{self.true_fork:8.1f}/s  os.fork() + execv(/bin/true) + waitpid", ex,
                f"{self.kafka_txn or 0:8.1f}/s  Kafka transactions (begin, produce 1, send_offsets, commit), serial, "
                f"librdkafka's retry backoff; p50 {self.kafka_txn_p50_ms or 0:.1f} ms",
                f"{self.kafka_txn_fast or 0:8.1f}/s  the same with the agent's retry.backoff.ms=1, linger.ms=0; "
                f"p50 {self.kafka_txn_fast_p50_ms or 0:.1f} ms  <- the agent's per-publish floor",
                f"          the same, 50 ms apart (one task at a time, as in the latency benchmark): "
                f"p50 {self.kafka_txn_idle_p50_ms or 0:.1f} ms"]


def executor_rate(n: int) -> tuple[float | None, str]:
    """ProcessExecutor.run of /bin/true in a loop, with a fresh work dir each time, like a slot does."""
    try:
        from scalebox_stream.executors.base import ExecRequest
        from scalebox_stream.executors.process import ProcessExecutor

        executor = ProcessExecutor()
        root = Path(tempfile.mkdtemp(prefix="sbx-bench-exec-"))
        try:
            started = time.perf_counter()
            for i in range(n):
                work = root / str(i)
                work.mkdir()
                result = executor.run(ExecRequest(argv=[TRUE, str(i), "{}"], env={"APP": "bench"}, work_dir=work,
                                                  name=f"bench-{i}"), lambda _cid: None)
                if result.exit_code != 0:
                    return None, f"exit code {result.exit_code}: {result.error}"
                shutil.rmtree(work)
            return n / (time.perf_counter() - started), ""
        finally:
            shutil.rmtree(root, ignore_errors=True)
    except Exception as exc:  # the executor's API is the lead's to change; report instead of failing
        return None, f"{type(exc).__name__}: {exc}"


def kafka_txn_rate(kafka: str, n: int, gap_s: float = 0.0, **producer_extra: object) -> tuple[float, float]:
    """Serial Kafka transactions like the agent's publish (one record, the consumer offsets, commit):
    (transactions/s, p50 ms), `gap_s` apart (not timed). `producer_extra`: librdkafka settings on top of the
    agent's producer config."""
    topic, t = "sbx.bench.txn", harness.tag()
    ensure_topics(AdminClient(admin_config(kafka)), {topic: 1})
    consumer = Consumer(consumer_config(kafka, f"sbx.bench.txn.{t}"))
    producer = Producer(producer_config(kafka, transactional_id=f"sbx-bench-txn-{t}", log_level=2,
                                        **producer_extra))
    try:
        producer.init_transactions(30)
        times = []
        for i in range(n):
            started = time.perf_counter()
            producer.begin_transaction()
            producer.produce(topic, key=b"bench", value=b"x" * 300)
            producer.send_offsets_to_transaction([TopicPartition(topic, 0, i)], consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            times.append(time.perf_counter() - started)
            time.sleep(gap_s)
        return n / sum(times), pct(times, 50) * 1e3
    finally:
        consumer.close()


def bounded(measure: Callable[[], tuple[float, float]], limit_s: float = 90.0) -> tuple[float | None, float | None]:
    """Run a Kafka measurement in a daemon thread; (None, None) if it fails or exceeds `limit_s` (a librdkafka
    call can block far beyond its timeout while the broker restarts, and cannot be interrupted)."""
    out: list[tuple[float, float]] = []

    def target() -> None:
        with contextlib.suppress(Exception):
            out.append(measure())

    thread = threading.Thread(target=target, daemon=True, name="kafka-txn")
    thread.start()
    thread.join(limit_s)
    if not out:
        say(f"  (Kafka transaction measurement failed or took over {limit_s:.0f}s: reported as 0)")
        return None, None
    return out[0]


def measure_baseline(n: int, kafka: str) -> Baseline:
    """Every spawn baseline, serially, N times each; then the Kafka transaction floor."""
    with tempfile.TemporaryDirectory() as work:
        emit, env = harness.emit_argv(work)
        started = time.perf_counter()
        for _ in range(n):
            subprocess.run(emit, env=env, check=True)
        emit_rate = n / (time.perf_counter() - started)
    ex_rate, note = executor_rate(n)
    txn, txn_ms = bounded(lambda: kafka_txn_rate(kafka, max(50, n // 10)))
    agent_settings = {"retry.backoff.ms": 1, "linger.ms": 0}
    fast, fast_ms = bounded(lambda: kafka_txn_rate(kafka, max(50, n // 10), **agent_settings))
    _, idle_ms = bounded(lambda: kafka_txn_rate(kafka, 50, 0.05, **agent_settings))
    return Baseline(n, harness.spawn_rate([TRUE], n), emit_rate, harness.spawn_rate([TRUE], n, "agent-like"),
                    harness.spawn_rate([TRUE], n, "posix_spawn"), harness.spawn_rate([TRUE], n, "fork"),
                    ex_rate, note, txn, txn_ms, fast, fast_ms, idle_ms)


@dataclass
class StageStats:
    """Percentiles (ms) of one module's attempts."""

    module: str
    count: int
    accept_ms: tuple[float, float, float]  # created -> accepted (p50, p90, p99)
    queue_ms: tuple[float, float, float]   # created -> started
    run_ms: tuple[float, float, float]     # started -> finished (the process, as the executor saw it)


@dataclass
class EngineResult:
    """One slot count's run."""

    slots: int
    pipelines: int
    executions: int
    wall_s: float                 # first publish -> every task terminal seen in the projection
    rate: float                   # executions / wall_s
    agent_s: float                # first TaskCreated -> last TaskFinished (task_runs)
    agent_rate: float             # executions / agent_s
    projector_lag_s: float        # last TaskFinished -> all terminal seen
    startup_s: float              # children started -> warm-up pipeline terminal in the projection
    events_per_task: float
    events_by_type: dict[str, int]
    run_events: int
    projector_eps: float          # events/s the projector committed (all apps) while this run was in flight
    stages: list[StageStats] = field(default_factory=list)
    emit_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)  # a finished -> b's TaskCreated
    capped: bool = False          # stopped at --max-seconds: the rates are over the tasks done by then
    cpu: cpu_account.CpuWindow | None = None  # the machine's CPU per task execution over the measured window
    raw_rate: float | None = None  # serial /bin/true spawns/s on the idle machine right before this run
    raw_note: str = ""             # how idle the machine was then


def engine_app(path: Path, name: str, slots: int) -> Path:
    """Stage a emits its body to b; b is /bin/true."""
    return harness.write_app(path, name, [("a", EMIT_ARGV, "b"), ("b", [TRUE], None)], slots)


def _p3(values: list[float]) -> tuple[float, float, float]:
    return (pct(values, 50) * 1e3, pct(values, 90) * 1e3, pct(values, 99) * 1e3)


def run_engine(slots: int, n: int, kafka: str, pg: str, keep: bool = False,
               max_seconds: float | None = None) -> EngineResult:
    """Deploy, start, warm up, publish N pipelines, wait (at most `max_seconds`, then the rates are over the
    tasks terminal by then), collect; every child is stopped on the way out."""
    tag = harness.tag()
    workdir = harness.bench_dir("engine")
    app = f"bench-engine-{tag}-s{slots}"
    dep = Deployment(engine_app(workdir / "app.yaml", app, slots), kafka, pg, workdir / "logs", workdir / "work")
    ok = False
    try:
        started = time.time()
        dep.start(slots)
        dep.send("a", [WARMUP])
        dep.wait_terminal(2, timeout_s=120)
        startup_s = time.time() - started
        samples: list[tuple[float, int]] = []

        def sample(conn: psycopg.Connection) -> None:
            row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets "
                               "WHERE topic = 'sbx.events'").fetchone()
            samples.append((time.time(), int(row[0])))

        cpu_start = cpu_account.snapshot()
        first_publish = time.time()
        dep.send("a", [str(i) for i in range(n)])
        seen = dep.wait_terminal(2 * n + 2, timeout_s=max(180.0, n / 5), on_poll=sample, cap_s=max_seconds)
        cpu_end = cpu_account.snapshot()
        wall_s = seen - first_publish
        with psycopg.connect(dep.dsn, autocommit=True) as conn:
            done = dep.terminal_counts(conn)[0] - 2
        result = collect(dep, slots, n, wall_s, seen, startup_s, samples, done)
        result.cpu = cpu_account.window(cpu_start, cpu_end, done)
        ok = True
        return result
    finally:
        dep.close()
        shutil.rmtree(workdir if ok and not keep else workdir / "work", ignore_errors=True)


def collect(dep: Deployment, slots: int, n: int, wall_s: float, seen: float, startup_s: float,
            samples: list[tuple[float, int]], done: int) -> EngineResult:
    """Numbers from the projection once the run is over (`done`: measured tasks terminal when it ended)."""
    rows = dep.query("""SELECT r.module, extract(epoch FROM r.created_at)::float8,
                               extract(epoch FROM r.accepted_at)::float8, extract(epoch FROM r.started_at)::float8,
                               extract(epoch FROM r.finished_at)::float8
                        FROM task_runs r JOIN tasks t USING (task_id)
                        WHERE r.app = %s AND t.body <> %s AND r.finished_at IS NOT NULL""", dep.app, WARMUP)
    by_module: dict[str, list[tuple]] = collections.defaultdict(list)
    for r in rows:
        by_module[r[0]].append(r)
    stages = [StageStats(m, len(rs), _p3([r[2] - r[1] for r in rs]), _p3([r[3] - r[1] for r in rs]),
                         _p3([r[4] - r[3] for r in rs])) for m, rs in sorted(by_module.items())]
    first_created, last_finished = min(r[1] for r in rows), max(r[4] for r in rows)
    emit = [r[0] for r in dep.query("""SELECT extract(epoch FROM c.created_at - p.finished_at)::float8
                                        FROM tasks c JOIN task_runs p ON p.task_id = c.parent_task_id
                                        WHERE c.app = %s AND c.body <> %s""", dep.app, WARMUP)]
    events = dict(dep.query("""SELECT a.event_type, count(*) FROM applied_events a
                               JOIN tasks t ON a.task_id = t.task_id::text
                               WHERE t.app = %s AND t.body <> %s AND t.status = ANY(%s)
                               GROUP BY 1 ORDER BY 1""", dep.app, WARMUP, list(harness.TERMINAL)))
    total_events = sum(events.values())
    eps = 0.0
    if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
        eps = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    agent_s = last_finished - first_created
    capped = done < 2 * n
    return EngineResult(slots, n, done, wall_s, done / wall_s, agent_s, len(rows) / agent_s,
                        0.0 if capped else seen - last_finished, startup_s,
                        total_events / max(1, done), events, total_events, eps, stages, _p3(emit), capped)


# ----- profiling -------------------------------------------------------------------------------------

PROFILE_RATE = 200


def profile_run(slots: int, n: int, kafka: str, pg: str, seconds: float) -> dict[str, str]:
    """An unmeasured run whose agent `a` is sampled by py-spy while busy; stops without waiting for the end."""
    workdir = harness.bench_dir("profile")
    app = f"bench-profile-{harness.tag()}-s{slots}"
    dep = Deployment(engine_app(workdir / "app.yaml", app, slots), kafka, pg, workdir / "logs", workdir / "work")
    try:
        dep.start(slots)
        dep.send("a", [WARMUP])
        dep.wait_terminal(2, timeout_s=120)
        dep.send("a", [str(i) for i in range(n)])
        time.sleep(1.0)
        result = profile_agent(dep.agents["a"].process.pid, seconds)
        shutil.rmtree(workdir, ignore_errors=True)
        return result
    finally:
        dep.close()
        shutil.rmtree(workdir / "work", ignore_errors=True)


def profile_agent(pid: int, seconds: float) -> dict[str, str]:
    """py-spy one agent: on-CPU samples, then wall-clock samples (idle included), then a flame graph SVG."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return {"error": "py-spy not installed (.ci/install-bench-deps.sh)"}
    out: dict[str, str] = {}
    runs = (("cpu", "/tmp/sbx-bench-agent-a.cpu.txt", ["--format", "raw"]),
            ("wall", "/tmp/sbx-bench-agent-a.wall.txt", ["--format", "raw", "--idle"]),
            ("svg", "/tmp/sbx-bench-agent-a.svg", ["--idle"]))
    for kind, path, extra in runs:
        duration = seconds if kind != "svg" else max(2.0, seconds / 2)
        proc = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate",
                                 str(PROFILE_RATE), "--threads", "--nonblocking", "--output", path, *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            harness.stop_process_group(proc)
            err = "timed out"
        ok = proc.returncode == 0 and Path(path).exists()
        out[kind] = path if ok else f"py-spy failed: {(err or '').strip()[-300:]}"
    out["seconds"] = str(seconds)
    return out


def _source_line(frame: str) -> str:
    """'func (pkg/file.py:12)' -> 'file.py:12 <the source line>'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file, _, line = where.rpartition(":")
    if not line.isdigit():
        return name
    for root in (harness.REPO, *map(Path, sys.path)):
        candidate = root / file
        if candidate.is_file():
            text = linecache.getline(str(candidate), int(line)).strip()
            return f"{Path(file).name}:{line} {name}: {text}"
    return f"{Path(file).name}:{line} {name}"


def _thread_kind(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "_run_in_slot" in joined or "_worker (concurrent" in joined:
        return "slot threads"
    if "Agent.run" in joined or "Agent._step" in joined or "<module> (" in joined:
        return "poll thread"
    return "other threads (librdkafka callbacks, timers)"


def summarize_collapsed(path: str, seconds: float, wall: bool, top: int = 8) -> list[str]:
    """Where one py-spy raw file's samples went: per thread kind, the lines they sat on."""
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        kind = _thread_kind(frames)
        totals[kind] += int(count)
        by_kind[kind][_source_line(frames[-1])] += int(count)
    if not totals:
        return ["(no samples)"]
    expected = seconds * PROFILE_RATE
    lines = []
    for kind, total in totals.most_common():
        share = f"{100 * total / expected:.0f}% of the wall time of one thread" if wall else \
            f"on CPU {100 * total / expected:.1f}% of the time (one core = 100%)"
        lines.append(f"{kind}: {total} samples, {share}")
        for where, c in by_kind[kind].most_common(top):
            lines.append(f"  {100 * c / total:5.1f}%  {where[:150]}")
    return lines


# ----- output ------------------------------------------------------------------------------------------


def report(result: EngineResult, base: Baseline) -> None:
    """Print one run's numbers."""
    r = result
    say(f"\n== engine, slots={r.slots}: {r.pipelines} pipelines = {2 * r.pipelines} task executions"
        + (f" -- CAPPED at --max-seconds: {r.executions} done, rates over those" if r.capped else ""))
    say(f"  end to end (first publish -> all terminal in PostgreSQL): {r.wall_s:6.2f}s = {r.rate:7.1f} tasks/s"
        f"  ({r.executions / 2 / r.wall_s:.1f} pipelines/s)")
    say(f"  agents' own timestamps (first created -> last finished): {r.agent_s:6.2f}s = {r.agent_rate:7.1f} tasks/s")
    say(f"  projector lag after the last TaskFinished: {r.projector_lag_s:.2f}s; projector committed "
        f"{r.projector_eps:.0f} events/s (all apps) while the run was in flight")
    raw = raw_rate(r, base)
    say(f"  ratio to raw /bin/true spawn rate ({raw:.0f}/s, measured right before this run; machine {r.raw_note}): "
        f"{r.rate / raw:.3f} end to end, {r.agent_rate / raw:.3f} agent side (goal >= {GOAL_RATIO})")
    say(f"  startup (children started -> warm-up pipeline done): {r.startup_s:.1f}s")
    if r.cpu is not None:
        say(f"  CPU over the measured window: {r.cpu.line()}")
    say(f"  events per task: {r.events_per_task:.2f} ({r.run_events} events: "
        + ", ".join(f"{k} {v}" for k, v in r.events_by_type.items()) + ")")
    say("  per stage, ms           p50      p90      p99")
    for s in r.stages:
        for label, v in (("created->accepted", s.accept_ms), ("created->started", s.queue_ms),
                         ("started->finished", s.run_ms)):
            say(f"    {s.module} {label:<18} {v[0]:8.1f} {v[1]:8.1f} {v[2]:8.1f}")
    say(f"    a finished -> b created {r.emit_ms[0]:8.1f} {r.emit_ms[1]:8.1f} {r.emit_ms[2]:8.1f}")


def report_short(r: EngineResult) -> None:
    """Print a run's throughput only."""
    say(f"\n== engine, slots={r.slots}: {r.pipelines} pipelines, {r.executions} task executions done"
        + (" (capped)" if r.capped else "") + ": "
        f"{r.wall_s:.2f}s = {r.rate:.1f} tasks/s end to end, {r.agent_rate:.1f} tasks/s by the agents' timestamps")


def raw_rate(r: EngineResult, base: Baseline) -> float:
    """The raw spawn rate a run is compared with: the one measured right before it, else the run's baseline."""
    return r.raw_rate or base.true_subprocess


def rows(results: list[EngineResult], base: Baseline) -> list[Row]:
    """Summary rows: one per slot count."""
    out = []
    for r in results:
        name = f"engine 2-stage, slots={r.slots} (e2e{', capped' if r.capped else ''})"
        raw = raw_rate(r, base)
        ratio = r.rate / raw
        out.append(Row(name, r.rate, "tasks/s", raw, "/bin/true spawns/s", ratio, f">= {GOAL_RATIO}",
                       ratio >= GOAL_RATIO))
    return out


def cpu_row(results: list[EngineResult], slots: int = 4) -> Row:
    """Summary row: the machine's CPU per task execution at `slots` (n/a when that slot count was not run)."""
    goal = f"<= {GOAL_CPU_MS} ms"
    for r in results:
        if r.slots == slots and r.cpu is not None:
            ms = r.cpu.machine_ms_per_task
            return Row(f"engine machine CPU per task, slots={slots}", ms, "ms", None, "", None, goal, ms <= GOAL_CPU_MS)
    return Row(f"engine machine CPU per task, slots={slots} (n/a: not run)", float("nan"), "ms", None, "", None,
               goal, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="pipelines (start tasks); 2x task executions")
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--baseline-n", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=180.0,
                        help="cap per slot count; the rates are then over the tasks done (0: no cap)")
    parser.add_argument("--warm-up", type=int, default=WARM_UP_PIPELINES,
                        help="pipelines of each unmeasured run at slots 4 that warms the broker first, repeated until "
                             "its CPU per task settles (0: none)")
    parser.add_argument("--smoke", action="store_true", help="200 pipelines, slots 2, no profile, no warm-up")
    parser.add_argument("--profile", action="store_true", help="py-spy the agents in an extra, unmeasured run")
    parser.add_argument("--json", action="store_true")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks, args.slots, args.baseline_n, args.profile, args.max_seconds = 200, [2], 300, False, 60.0
        args.warm_up = 0
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        base, results = run(args.tasks, args.slots, args.baseline_n, args.kafka, args.pg, args.profile,
                            args.max_seconds or None, args.warm_up, settle_s=5.0 if args.smoke else 30.0)
    harness.print_table(rows(results, base), "engine overhead")
    if args.json:
        print(json.dumps({"baseline": asdict(base), "runs": [asdict(r) for r in results]}))
    return 0


def warm_up_broker(pipelines: int, kafka: str, pg: str, max_seconds: float | None,
                   min_s: float = WARM_UP_MIN_S, limit_s: float = WARM_UP_LIMIT_S) -> None:
    """Unmeasured runs of `pipelines` at slots 4 until at least `min_s` have passed and the broker's CPU per task
    has settled (`cpu_account.settled`), or `limit_s` have passed: a broker that has just started spends several
    times the CPU per task of a warm one, and a fixed count of tasks did not always cover its JIT's work."""
    started, previous = time.monotonic(), None
    for k in itertools.count(1):
        warm = run_engine(4, pipelines, kafka, pg, max_seconds=max_seconds)
        broker_ms = warm.cpu.ms_per_task.get("kafka", 0.0) if warm.cpu else float("nan")
        elapsed = time.monotonic() - started
        say(f"broker warm-up {k} (unmeasured): {warm.executions} task executions at slots 4 in {warm.wall_s:.1f}s; "
            f"the broker spent {broker_ms:.2f} ms of CPU per task execution ({elapsed:.0f}s into the warm-up)")
        done = cpu_account.settled(previous, broker_ms) and elapsed >= min_s
        if done or elapsed >= limit_s:
            say(f"broker warm-up over after {elapsed:.0f}s: " + ("its CPU per task has settled" if done else
                                                                 f"not settled within {limit_s:.0f}s"))
            return
        previous = broker_ms


def run(tasks: int, slots: list[int], baseline_n: int, kafka: str, pg: str, profile: bool,
        max_seconds: float | None = None, warm_up: int = 0,
        settle_s: float = 30.0) -> tuple[Baseline, list[EngineResult]]:
    """The broker's warm-up (`warm_up` pipelines, unmeasured), the baseline, then one engine run per slot count
    (and the optional profiled run); each measurement first waits up to `settle_s` for an idle machine."""
    say(f"load average before: {harness.load_average()} (cpus: {os.cpu_count()})")
    if warm_up:
        warm_up_broker(warm_up, kafka, pg, max_seconds)
    say(f"machine {harness.wait_until_idle(timeout_s=settle_s)}")
    base = measure_baseline(baseline_n, kafka)
    say(f"spawn baselines, serial, N={base.n}:")
    for line in base.lines():
        say("  " + line)
    results = []
    for s in slots:
        # The VM's speed drifts within minutes: each run is compared with the raw rate measured just before it,
        # once what the previous run left behind (autovacuum, the broker's clean-up) has settled.
        idle = harness.wait_until_idle(timeout_s=settle_s)
        raw = harness.spawn_rate([TRUE], baseline_n)
        result = run_engine(s, tasks, kafka, pg, max_seconds=max_seconds)
        result.raw_rate, result.raw_note = raw, idle
        report(result, base)
        results.append(result)
    if profile:
        s = 2 if 2 in slots else slots[0]
        n = min(tasks, 500)
        say(f"\n== profiled run (py-spy on agent a, not measured): slots={s}, {n} pipelines")
        prof = profile_run(s, n, kafka, pg, seconds=5.0)
        seconds = float(prof.pop("seconds", "5"))
        for kind, path in prof.items():
            say(f"  {kind}: {path}")
            if kind in ("cpu", "wall") and path.startswith("/tmp/"):
                for line in summarize_collapsed(path, seconds, wall=kind == "wall"):
                    say("    " + line)
    say(f"load average after: {harness.load_average()}")
    return base, results


if __name__ == "__main__":
    sys.exit(main())
