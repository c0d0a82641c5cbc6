"""A million tasks: N task executions through two modules end to end, measured per window of N/10.

Module a (a shell that passes its body on) emits one task to module b (/bin/true): N/2 pipelines, N task
executions, process executor, fed one window at a time (a window is published, then waited for). Per window:

- rate: task executions per second over the window;
- RSS of each agent, the projector and the broker (the local one; "-" for a broker elsewhere);
- projection rows (tasks, task_runs, task_edges, applied_events) and bytes per task execution (the private
  database's pg_total_relation_size, cumulative);
- Kafka bytes per task execution: growth of the broker's log directories of sbx.events (shared: other
  traffic on the broker lands there too) and of the app's task topics.

Goals (PASS/FAIL): the last window's rate >= 0.9 x the first; memory flat: every process's RSS in the last
window <= 1.2 x its RSS in the second (the first holds the warm-up). Disk per task is printed with what bounds
it: the events topic's retention, the app's task topics deleted by `scalebox app gc`, the projection kept
whole (it is the record).

    python tests/bench/bench_million.py                  # 1,000,000 executions (hours on 2 cores)
    python tests/bench/bench_million.py --tasks 20000    # a smoke-sized run
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import psycopg
import testpath  # noqa: F401  (tests/ on sys.path)
from harness import EMIT_ARGV, TRUE, Deployment, say

from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic

WINDOWS = 10
RATE_GOAL = 0.9
RSS_GOAL = 1.2
PROJECTION_TABLES = ("tasks", "task_runs", "task_edges", "applied_events")


@dataclass(frozen=True)
class Window:
    """What one window measured (cumulative sizes at its end)."""

    index: int
    executions: int
    seconds: float
    rss_mb: dict[str, float | None]
    rows: int
    projection_bytes: int
    kafka_bytes: int

    @property
    def rate(self) -> float:
        return self.executions / self.seconds


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process in MiB (None if it is gone or unknown)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def broker() -> tuple[int | None, Path | None]:
    """The local broker's pid and data directory, or (None, None) if it is not the local one."""
    from scalebox_stream.local import kafka

    info = kafka.running()
    return (info.pid, Path(info.data_dir)) if info is not None else (None, None)


def log_bytes(data_dir: Path | None, app: str) -> int:
    """Bytes on disk of the events topic's and the app's task topics' partition directories."""
    if data_dir is None:
        return 0
    prefixes = (f"{EVENTS_TOPIC}-", task_topic(app, ""))
    total = 0
    for part in data_dir.iterdir():
        if part.is_dir() and part.name.startswith(prefixes):
            total += sum(f.stat().st_size for f in part.iterdir() if f.is_file())
    return total


def projection_size(dsn: str) -> tuple[int, int]:
    """(rows in the task tables, bytes of every table of the projection with its indexes and TOAST)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in PROJECTION_TABLES)
        size = conn.execute("""SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
                               WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace""").fetchone()[0]
    return int(rows), int(size)


def run(tasks: int, slots: int, kafka: str, pg: str, keep: bool) -> list[Window]:
    """Deploy, warm up, then feed and measure WINDOWS windows; every child is stopped on the way out."""
    workdir = harness.bench_dir("million")
    app = f"bench-million-{harness.tag()}"
    path = harness.write_app(workdir / "app.yaml", app, [("a", EMIT_ARGV, "b"), ("b", [TRUE], None)], slots)
    dep = Deployment(path, kafka, pg, workdir / "logs", workdir / "work", keep_db=keep)
    per_window = max(1, tasks // WINDOWS // 2)  # pipelines per window (two executions each)
    windows: list[Window] = []
    try:
        dep.start(slots)
        dep.send("a", ["warmup"])
        dep.wait_terminal(2, timeout_s=180)
        broker_pid, data_dir = broker()
        _, bytes0 = projection_size(dep.dsn)
        kafka0 = log_bytes(data_dir, app)
        for index in range(WINDOWS):
            started = time.perf_counter()
            for chunk in range(0, per_window, 10_000):
                dep.send("a", [str(index * per_window + i) for i in range(chunk, min(per_window, chunk + 10_000))])
            expected = 2 + 2 * per_window * (index + 1)
            dep.wait_terminal(expected, timeout_s=max(600.0, per_window / 5), poll_s=1.0)
            seconds = time.perf_counter() - started
            rss = {f"agent {m}": rss_mb(child.process.pid) for m, child in dep.agents.items()}
            rss["projector"] = rss_mb(dep.projector.process.pid if dep.projector else None)
            rss["broker"] = rss_mb(broker_pid)
            rows, size = projection_size(dep.dsn)
            window = Window(index + 1, 2 * per_window, seconds, rss, rows, size - bytes0,
                            log_bytes(data_dir, app) - kafka0)
            windows.append(window)
            done = 2 * per_window * (index + 1)
            say(f"window {window.index}/{WINDOWS}: {window.rate:.0f} tasks/s; RSS "
                + ", ".join(f"{k} {_mb(v)}" for k, v in rss.items())
                + f"; projection {rows} rows, {window.projection_bytes / done:.0f} B/task; "
                f"kafka {window.kafka_bytes / done:.0f} B/task")
        return windows
    finally:
        dep.close()
        shutil.rmtree(workdir if not keep else workdir / "work", ignore_errors=True)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def verdicts(windows: list[Window]) -> list[tuple[str, str, bool]]:
    """(goal, measured, PASS) for the rate and each process's memory."""
    first, second, last = windows[0], windows[min(1, len(windows) - 1)], windows[-1]
    ratio = last.rate / first.rate
    out = [(f"rate: last window >= {RATE_GOAL} x first", f"{last.rate:.0f} / {first.rate:.0f} = {ratio:.2f}",
            ratio >= RATE_GOAL)]
    for name, early in second.rss_mb.items():
        late = last.rss_mb.get(name)
        if early is None or late is None:
            continue
        out.append((f"memory flat: {name} last <= {RSS_GOAL} x second", f"{late:.0f} / {early:.0f} MB = "
                    f"{late / early:.2f}", late <= RSS_GOAL * early))
    return out


def report(windows: list[Window], tasks: int) -> bool:
    """Print the per-window table, the disk per task with its bounds, and the goals; True if all pass."""
    names = list(windows[0].rss_mb)
    print(f"\nmillion tasks: {tasks} task executions through two modules, {len(windows)} windows")
    print(f"{'window':>6}{'tasks/s':>9}" + "".join(f"{n + ' MB':>16}" for n in names)
          + f"{'rows':>10}{'rows/task':>10}{'PG B/task':>11}{'Kafka B/task':>14}")
    done = 0
    for w in windows:
        done += w.executions
        print(f"{w.index:>6}{w.rate:>9.0f}" + "".join(f"{_mb(w.rss_mb[n])[:-3]:>16}" for n in names)
              + f"{w.rows:>10}{w.rows / done:>10.2f}{w.projection_bytes / done:>11.0f}{w.kafka_bytes / done:>14.0f}")
    last = windows[-1]
    print(f"disk per task execution: projection {last.projection_bytes / done:.0f} B (kept whole: the record; "
          f"bounded only by deleting apps' rows), Kafka {last.kafka_bytes / done:.0f} B (sbx.events: bounded by "
          "its retention; the app's task topics: deleted by `scalebox app gc` once the app has finished)")
    ok = True
    for goal, measured, passed in verdicts(windows):
        ok &= passed
        print(f"{goal:<48} {measured:<28} {'PASS' if passed else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="task executions [1,000,000]")
    parser.add_argument("--slots", type=int, default=4, help="slots per agent [4]")
    parser.add_argument("--smoke", action="store_true", help="2,000 executions (a check that it works)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and the private database")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    tasks = 2000 if args.smoke else args.tasks
    harness.check_services(args.kafka, args.pg)
    with harness.sigterm_as_interrupt():
        windows = run(tasks, args.slots, args.kafka, args.pg, args.keep)
    return 0 if report(windows, tasks) or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
