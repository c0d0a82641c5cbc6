"""End-to-end latency of one task through three modules on an idle system, against the raw cost of spawning
the same three processes serially in the same run.

    .venv/bin/python tests/bench/bench_latency.py [--runs 200] [--smoke]

Modules m1 -> m2 -> m3 (process executor, one slot each): m1 and m2 run `sh -c 'printf ... >
$WORK_DIR/sink-tasks.txt'` (one task to the next module), m3 runs /bin/true. One start task at a time; the
next is sent once m3's task is terminal in the projection. Latency = m3's TaskFinished finished_at minus the
start task's TaskCreated occurred_at (both from the projection, i.e. the producers' clocks on this machine).
Goals: p50 <= 15 ms, p99 <= 40 ms. Also prints each hop: created->accepted (Kafka delivery + the agent's poll and its
TaskAccepted), accepted->started (slot hand-off, work dir, fork/exec), started->finished (the process), and
finished->next created (reading sink-tasks.txt and building the child event). The next hop's created->accepted
is split by an observer (a read-committed consumer of m2's and m3's task topics in this process) into
created->visible (the sender's transaction commit) and visible->accepted (the receiver's fetch, poll and
TaskAccepted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import harness
import psycopg
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from harness import EMIT_ARGV, TRUE, Deployment, Row, pct, say

from scalebox_stream.events import DecodeError, EventCodec, child_task_id
from scalebox_stream.kafka.config import secured
from scalebox_stream.kafka.topics import task_topic

GOAL_P50_MS = 15.0
GOAL_P99_MS = 40.0
MODULES = ("m1", "m2", "m3")
WARMUP_RUNS = 3


@dataclass
class LatencyResult:
    """Latencies in ms."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    baseline_p50_ms: float
    baseline_p99_ms: float
    hops: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> (p50, p90, p99)
    cycle_p50_ms: float = 0.0  # send -> seen terminal in the projection (includes projector lag)


class Observer(threading.Thread):
    """A read-committed consumer of the task topics of `modules` that notes when each task becomes visible
    (its producer's transaction committed): splits a hop into the sender's commit and the receiver's pick-up.

    It reads only those topics (not the events topic, with every event of every app), and its fetches wait up to
    100 ms (they are answered the moment a commit makes a task visible), so the instrument itself does not keep
    the broker busy."""

    def __init__(self, kafka: str, app: str, modules: Sequence[str]) -> None:
        super().__init__(daemon=True, name="observer")
        self.app = app
        self.visible: dict[str, float] = {}
        self._halt = threading.Event()
        self.consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"sbx.bench.observer.{harness.tag()}",
                                          "enable.auto.commit": False, "isolation.level": "read_committed",
                                          "fetch.wait.max.ms": 100, "log_level": 2}))
        topics = [task_topic(app, m) for m in modules]
        metadata = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign([TopicPartition(t, p, OFFSET_END) for t in topics for p in metadata[t].partitions])
        self.codec = EventCodec()

    def run(self) -> None:
        """Poll until stopped."""
        while not self._halt.is_set():
            message = self.consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            seen = time.time()
            try:
                event = self.codec.decode(message.value())
            except DecodeError:
                continue
            if event.app == self.app and event.event_type == "TaskCreated":
                self.visible.setdefault(event.task_id, seen)

    def close(self) -> None:
        """Stop polling and close the consumer."""
        self._halt.set()
        self.join(timeout=5)
        self.consumer.close()


def spawn_three(runs: int) -> list[float]:
    """Seconds to run m1's, m2's and m3's commands one after the other, `runs` times."""
    out = []
    with tempfile.TemporaryDirectory() as work:
        emit, env = harness.emit_argv(work)
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(emit, env=env, check=True)
            subprocess.run(emit, env=env, check=True)
            subprocess.run([TRUE, "17", "{}"], check=True)
            out.append(time.perf_counter() - started)
    return out


def chain_ids(root: str) -> list[str]:
    """The ids of the start task and of the two tasks it leads to (child ids are derived)."""
    first = child_task_id(root, 0)
    return [root, first, child_task_id(first, 0)]


def run_latency(runs: int, kafka: str, pg: str, settle_s: float = 60.0) -> LatencyResult:
    """Deploy m1 -> m2 -> m3, send one task at a time, collect the timestamps from the projection. First wait
    (up to `settle_s`) until the machine is idle."""
    say(f"  machine {harness.wait_until_idle(timeout_s=settle_s)} (the benchmark wants an idle system)")
    baseline = spawn_three(runs)
    workdir = harness.bench_dir("latency")
    app = f"bench-latency-{harness.tag()}"
    modules = [("m1", EMIT_ARGV, "m2"), ("m2", EMIT_ARGV, "m3"), ("m3", [TRUE], None)]
    dep = Deployment(harness.write_app(workdir / "app.yaml", app, modules, 1), kafka, pg, workdir / "logs",
                     workdir / "work")
    chains: list[list[str]] = []
    cycles: list[float] = []
    observer = Observer(kafka, app, MODULES[1:])
    observer.start()
    ok = False
    try:
        dep.start(1)
        with psycopg.connect(dep.dsn, autocommit=True) as conn:
            for i in range(WARMUP_RUNS + runs):
                sent = time.perf_counter()
                ids = chain_ids(dep.send("m1", [f"r{i}"])[0])
                wait_done(dep, conn, ids, timeout_s=120 if i == 0 else 30)
                if i >= WARMUP_RUNS:
                    chains.append(ids)
                    cycles.append(time.perf_counter() - sent)
                time.sleep(0.02)  # let the agents settle back into their idle poll
        rows = dep.query("""SELECT task_id::text, extract(epoch FROM created_at)::float8,
                                   extract(epoch FROM accepted_at)::float8, extract(epoch FROM started_at)::float8,
                                   extract(epoch FROM finished_at)::float8
                            FROM task_runs WHERE app = %s AND attempt = 1""", app)
        ok = True
    finally:
        try:
            observer.close()
        finally:
            dep.close()
            shutil.rmtree(workdir if ok else workdir / "work", ignore_errors=True)
    stamps = {r[0]: r[1:] for r in rows}
    e2e, hops = [], {}
    for ids in chains:
        runs_of = [stamps[t] for t in ids]
        e2e.append(runs_of[-1][3] - runs_of[0][0])
        for k, (module, (created, accepted, started, finished)) in enumerate(zip(MODULES, runs_of, strict=True)):
            hops.setdefault(f"{module} created->accepted", []).append(accepted - created)
            hops.setdefault(f"{module} accepted->started", []).append(started - accepted)
            hops.setdefault(f"{module} started->finished", []).append(finished - started)
            if k + 1 < len(MODULES):
                nxt = MODULES[k + 1]
                hops.setdefault(f"{module} finished->{nxt} created", []).append(runs_of[k + 1][0] - finished)
                visible = observer.visible.get(ids[k + 1])
                if visible is not None:
                    hops.setdefault(f"  {nxt} created->visible (commit)", []).append(visible - runs_of[k + 1][0])
                    hops.setdefault(f"  {nxt} visible->accepted (pick-up)", []).append(runs_of[k + 1][1] - visible)
    ms = [x * 1e3 for x in e2e]
    return LatencyResult(len(ms), pct(ms, 50), pct(ms, 90), pct(ms, 99), max(ms), pct(baseline, 50) * 1e3,
                         pct(baseline, 99) * 1e3,
                         {k: (pct(v, 50) * 1e3, pct(v, 90) * 1e3, pct(v, 99) * 1e3) for k, v in hops.items()},
                         pct(cycles, 50) * 1e3)


def wait_done(dep: Deployment, conn: psycopg.Connection, ids: list[str], timeout_s: float) -> None:
    """Poll the projection until the last task of the chain is terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute("SELECT status FROM tasks WHERE task_id = %s", (ids[-1],)).fetchone()
        if row and row[0] in harness.TERMINAL:
            if row[0] != "succeeded":
                raise RuntimeError(f"task {ids[-1]} {row[0]}; logs in {dep.log_dir}")
            return
        dep.check_children()
        if time.monotonic() > deadline:
            states = conn.execute("SELECT task_id::text, module, status FROM tasks WHERE task_id = ANY(%s::uuid[])",
                                  (ids,)).fetchall()
            raise TimeoutError(f"chain {ids} not finished within {timeout_s:.0f}s (projected: {states}); "
                               f"logs in {dep.log_dir}")
        time.sleep(0.01)


def report(r: LatencyResult) -> None:
    """Print the numbers."""
    say(f"\n== latency, one task through 3 modules, {r.runs} sequential runs (after {WARMUP_RUNS} warm-up runs)")
    say(f"  end to end (first TaskCreated -> m3 finished): p50 {r.p50_ms:.1f} ms, p90 {r.p90_ms:.1f} ms, "
        f"p99 {r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms "
        f"(goals p50 <= {GOAL_P50_MS:.0f} ms, p99 <= {GOAL_P99_MS:.0f} ms)")
    say(f"  baseline, the 3 processes spawned serially: p50 {r.baseline_p50_ms:.2f} ms, p99 {r.baseline_p99_ms:.2f} ms"
        f" -> ratio p50/baseline {r.p50_ms / r.baseline_p50_ms:.1f}x")
    say(f"  (send -> seen terminal in the projection, incl. projector lag: p50 {r.cycle_p50_ms:.1f} ms)")
    say("  per hop, ms                       p50      p90      p99")
    for name, (p50, p90, p99) in r.hops.items():
        say(f"    {name:<28} {p50:8.1f} {p90:8.1f} {p99:8.1f}")


def rows(r: LatencyResult) -> list[Row]:
    """Summary rows: p50 and p99, each with its goal."""
    return [Row("latency 3 modules p50", r.p50_ms, "ms", r.baseline_p50_ms, "3 spawns p50 ms",
                r.p50_ms / r.baseline_p50_ms, f"<= {GOAL_P50_MS:.0f} ms", r.p50_ms <= GOAL_P50_MS),
            Row("latency 3 modules p99", r.p99_ms, "ms", r.baseline_p99_ms, "3 spawns p99 ms",
                r.p99_ms / r.baseline_p99_ms, f"<= {GOAL_P99_MS:.0f} ms", r.p99_ms <= GOAL_P99_MS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="30 runs")
    parser.add_argument("--json", action="store_true")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 30
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        say(f"load average before: {harness.load_average()}")
        result = run_latency(args.runs, args.kafka, args.pg, settle_s=5.0 if args.smoke else 60.0)
    report(result)
    harness.print_table(rows(result), "latency")
    if args.json:
        print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
