"""A million tasks: N task executions through two modules end to end, measured per window of N/10.

Module a (a shell that passes its body on) emits one task to module b (/bin/true): N/2 pipelines, N task
executions, process executor, fed one window at a time (a window is published, then waited for). Per window:

- rate: task executions per second over the window;
- RSS of each agent, the projector and the broker (the local one; "-" for a broker elsewhere), and the broker's
  live heap: what its heap holds right after a full collection (`jcmd <pid> GC.run`, then `GC.heap_info`);
- projection rows (tasks, task_runs, task_edges, applied_events) and bytes per task execution (the private
  database's pg_total_relation_size, cumulative);
- Kafka bytes per task execution: growth of the broker's log directories of sbx.events (shared: other
  traffic on the broker lands there too) and of the app's task topics.

Goals (PASS/FAIL): the last window's rate >= 0.9 x the first; memory flat: the last window's figure <= 1.2 x
the second's (the first holds the warm-up), judged on the RSS of the agents and the projector and on the
broker's live heap. A JVM's RSS is not judged: it rises towards the heap's cap (`-Xmx`) by design, since the
collector uses the room it is given before it collects, so it tells how big the heap may get, not what the
broker keeps. Disk per task is printed with what bounds it: the events topic's retention, the app's task
topics deleted by `scalebox app gc`, the projection kept whole (it is the record).

Each window's line is printed as soon as it is measured. `--deadline HH:MM` (UTC) or SIGTERM ends the run early:
the window under way is measured as a partial one, the summary covers what was measured, and every process the
run started (with `--own-services`, its Kafka and PostgreSQL too) is stopped.

    python tests/bench/bench_million.py --own-services                 # 1,000,000 executions (about an hour)
    python tests/bench/bench_million.py --own-services --tasks 20000   # a smoke-sized run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import psycopg
import testpath  # noqa: F401  (tests/ on sys.path)
from harness import EMIT_ARGV, TRUE, Deployment, say
from long_runs import own_services, parse_deadline, past, seconds_left

from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic

WINDOWS = 10
RATE_GOAL = 0.9
RSS_GOAL = 1.2
STALL_S = 180.0
"""A window with no task finishing for this long ends the run (the projection or an agent is stuck)."""
PROJECTION_TABLES = ("tasks", "task_runs", "task_edges", "applied_events")


@dataclass(frozen=True)
class Window:
    """What one window measured (sizes cumulative since the warm-up, at its end)."""

    index: int
    executions: int
    seconds: float
    rss_mb: dict[str, float | None]
    heap_mb: float | None
    """The broker's live heap (after a full collection); None if it could not be measured."""
    rows: int
    projection_bytes: int
    kafka_bytes: int
    done: int
    """Task executions finished since the warm-up, at the window's end."""
    partial: bool = False
    """Cut short by the deadline or SIGTERM."""

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The window's progress line."""
        done = max(1, self.done)
        return (f"window {self.index}/{WINDOWS}{' (partial)' if self.partial else ''}: {self.executions} "
                f"executions in {self.seconds:.0f} s, {self.rate:.0f} tasks/s; RSS "
                + ", ".join(f"{k} {_mb(v)}" for k, v in self.rss_mb.items())
                + f"; broker live heap {_mb(self.heap_mb)}"
                f"; projection {self.rows} rows, {self.projection_bytes / done:.0f} B/task; "
                f"kafka {self.kafka_bytes / done:.0f} B/task")


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


_HEAP_USED = re.compile(r"heap\s+total\s+\d+K,\s+used\s+(\d+)K")


def heap_used_bytes(heap_info: str) -> int | None:
    """The heap's used bytes in the output of `jcmd <pid> GC.heap_info` (None if it holds no heap line)."""
    match = _HEAP_USED.search(heap_info)
    return int(match.group(1)) * 1024 if match else None


def jcmd_for(pid: int) -> str | None:
    """The `jcmd` of the JDK that runs `pid` (a jcmd attaches to a JVM of its own version), else the one on PATH."""
    with contextlib.suppress(OSError):
        beside = Path(os.readlink(f"/proc/{pid}/exe")).with_name("jcmd")
        if os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("jcmd")


def live_heap_mb(pid: int | None) -> float | None:
    """What a JVM's heap holds right after a full collection, in MiB: `jcmd <pid> GC.run`, then `GC.heap_info`
    (the used size it prints).
    None if there is no such JVM or no jcmd to ask it."""
    jcmd = None if pid is None else jcmd_for(pid)
    if jcmd is None:
        return None
    try:  # both commands in one attach (`-f`: commands read from a file, here stdin)
        info = subprocess.run([jcmd, str(pid), "-f", "/dev/stdin"], input="GC.run\nGC.heap_info\n",
                              capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = heap_used_bytes(info)
    return None if used is None else used / 2**20


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


def run(tasks: int, slots: int, kafka: str, pg: str, keep: bool,
        deadline: dt.datetime | None = None) -> list[Window]:
    """Deploy, warm up, then feed and measure WINDOWS windows, each printed as soon as it is measured; every
    child is stopped on the way out. The deadline or SIGTERM ends the run early: the window under way is
    measured as a partial one, and the windows so far are returned."""
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
        meter = Meter(dep)
        for index in range(WINDOWS):
            if past(deadline):
                say(f"deadline reached: stopped after window {index}")
                break
            started, expected = time.perf_counter(), 2 * per_window * (index + 1)
            try:
                for chunk in range(0, per_window, 10_000):
                    dep.send("a", [str(index * per_window + i)
                                   for i in range(chunk, min(per_window, chunk + 10_000))])
                left = seconds_left(deadline)
                dep.wait_terminal(meter.before + expected, timeout_s=max(600.0, per_window / 5), poll_s=1.0,
                                  cap_s=None if left is None else max(0.0, left), on_poll=Stall(dep.app))
            except (KeyboardInterrupt, Stalled) as stop:
                say(f"{stop}: measuring the window under way, then stopping" if isinstance(stop, Stalled)
                    else "interrupted: measuring the window under way, then stopping")
                windows.append(meter.window(index + 1, expected, time.perf_counter() - started, windows))
                say(windows[-1].line())
                break
            windows.append(meter.window(index + 1, expected, time.perf_counter() - started, windows))
            say(windows[-1].line())
            if windows[-1].partial:
                say(f"deadline reached: stopped in window {index + 1}")
                break
        return windows
    finally:
        dep.close()
        shutil.rmtree(workdir if not keep else workdir / "work", ignore_errors=True)


class Stalled(Exception):
    """No task became terminal in the projection for STALL_S seconds."""


class Stall:
    """A wait_terminal poll hook: raises Stalled, naming the tasks that hold the window up, when the app's
    terminal count has not moved for STALL_S seconds."""

    def __init__(self, app: str) -> None:
        self.app, self.seen, self.since, self.checked = app, -1, time.monotonic(), 0.0

    def __call__(self, conn: psycopg.Connection) -> None:
        if time.monotonic() - self.checked < 15:
            return
        self.checked = time.monotonic()
        done = conn.execute("SELECT count(*) FROM tasks WHERE app = %s AND status = ANY(%s)",
                            (self.app, list(harness.TERMINAL))).fetchone()[0]
        if done != self.seen:
            self.seen, self.since = done, time.monotonic()
            return
        if time.monotonic() - self.since < STALL_S:
            return
        stuck = conn.execute("""SELECT t.task_id, t.module, t.status, max(r.status) FROM tasks t
                                LEFT JOIN task_runs r USING (task_id)
                                WHERE t.app = %s AND t.status <> ALL(%s) GROUP BY 1, 2, 3 LIMIT 20""",
                             (self.app, list(harness.TERMINAL))).fetchall()
        shown = "; ".join(f"{tid} ({module}): task {status}, its run {run or 'none'}"
                          for tid, module, status, run in stuck)
        raise Stalled(f"stalled: {done} terminal for {STALL_S:.0f} s; not terminal in `tasks`: {shown}")


class Meter:
    """Measures windows: the app's terminal tasks, the processes' memory, the projection's and the logs' size
    (sizes cumulative since the warm-up)."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.broker_pid, self.data_dir = broker()
        _, self.bytes0 = projection_size(dep.dsn)
        self.kafka0 = log_bytes(self.data_dir, dep.app)
        self.before = self.terminal()

    def terminal(self) -> int:
        """Terminal task executions of the app in the projection."""
        with psycopg.connect(self.dep.dsn, autocommit=True) as conn:
            return self.dep.terminal_counts(conn)[0]

    def window(self, index: int, expected: int, seconds: float, earlier: list[Window]) -> Window:
        """The window just ended (partial if fewer than `expected` executions are done since the warm-up)."""
        dep = self.dep
        rss = {f"agent {m}": rss_mb(child.process.pid) for m, child in dep.agents.items()}
        rss["projector"] = rss_mb(dep.projector.process.pid if dep.projector else None)
        rss["broker"] = rss_mb(self.broker_pid)
        heap = live_heap_mb(self.broker_pid)
        rows, size = projection_size(dep.dsn)
        done = self.terminal() - self.before
        previous = earlier[-1].done if earlier else 0
        return Window(index, done - previous, seconds, rss, heap, rows, size - self.bytes0,
                      log_bytes(self.data_dir, dep.app) - self.kafka0, done, done < expected)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


JUDGED_BY_HEAP = ("broker",)
"""JVMs: their memory is judged on the live heap, not on RSS (see the module's docstring)."""


def verdicts(windows: list[Window]) -> list[tuple[str, str, bool]]:
    """(goal, measured, PASS) for the rate, the agents' and the projector's RSS and the broker's live heap, over
    the complete windows."""
    whole = [w for w in windows if not w.partial] or windows
    first, second, last = whole[0], whole[min(1, len(whole) - 1)], whole[-1]
    ratio = last.rate / first.rate if first.rate else 0.0
    out = [(f"rate: last window >= {RATE_GOAL} x first", f"{last.rate:.0f} / {first.rate:.0f} = {ratio:.2f}",
            ratio >= RATE_GOAL)]
    figures = {name: (early, last.rss_mb.get(name)) for name, early in second.rss_mb.items()
               if name not in JUDGED_BY_HEAP}
    figures["broker live heap"] = (second.heap_mb, last.heap_mb)
    for name, (early, late) in figures.items():
        if early is None or late is None:
            continue
        out.append((f"memory flat: {name} last <= {RSS_GOAL} x second", f"{late:.0f} / {early:.0f} MB = "
                    f"{late / early:.2f}", late <= RSS_GOAL * early))
    return out


def report(windows: list[Window], tasks: int) -> bool:
    """Print the per-window table, the disk per task with its bounds, and the goals; True if all pass."""
    if not windows:
        print("\nmillion tasks: stopped before the first window was measured")
        return False
    names = list(windows[0].rss_mb)
    last = windows[-1]
    reached = "" if last.done >= tasks else f", stopped early after {last.done}"
    print(f"\nmillion tasks: {tasks} task executions through two modules{reached}, {len(windows)} windows")
    print(f"{'window':>7}{'tasks/s':>9}" + "".join(f"{n + ' MB':>16}" for n in names) + f"{'broker heap MB':>16}"
          + f"{'rows':>10}{'rows/task':>10}{'PG B/task':>11}{'Kafka B/task':>14}")
    for w in windows:
        done = max(1, w.done)
        print(f"{w.index:>6}{'*' if w.partial else ' '}{w.rate:>9.0f}"
              + "".join(f"{_number(w.rss_mb[n]):>16}" for n in names) + f"{_number(w.heap_mb):>16}"
              + f"{w.rows:>10}{w.rows / done:>10.2f}{w.projection_bytes / done:>11.0f}{w.kafka_bytes / done:>14.0f}")
    print("MB columns: resident memory (RSS), except broker heap: the broker's live heap after a full collection "
          "(jcmd GC.run, GC.heap_info). The broker's memory is judged on its live heap: a JVM's RSS rises towards its "
          "heap cap (-Xmx) by design.")
    if last.partial:
        print("* partial window (the deadline or SIGTERM); the goals use the complete windows")
    done = max(1, last.done)
    print(f"disk per task execution: projection {last.projection_bytes / done:.0f} B (kept whole: the record; "
          f"bounded only by deleting apps' rows), Kafka {last.kafka_bytes / done:.0f} B (sbx.events: bounded by "
          "its retention; the app's task topics: deleted by `scalebox app gc` once the app has finished)")
    if last.rss_mb.get("broker") is not None and last.heap_mb is None:
        print("broker live heap: not measured (no jcmd beside the broker's java or on PATH: it comes with a JDK, "
              "not with a JRE); the broker's memory is not judged")
    ok = True
    for goal, measured, passed in verdicts(windows):
        ok &= passed
        print(f"{goal:<52} {measured:<28} {'PASS' if passed else 'FAIL'}")
    sys.stdout.flush()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="task executions [1,000,000]")
    parser.add_argument("--slots", type=int, default=4, help="slots per agent [4]")
    parser.add_argument("--smoke", action="store_true", help="2,000 executions (a check that it works)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and the private database")
    parser.add_argument("--own-services", action="store_true",
                        help="a Kafka and a PostgreSQL of the run's own (a fresh SCALEBOX_HOME on free ports), "
                        "so the tasks' events never land on the shared broker; --kafka/--pg are ignored")
    parser.add_argument("--deadline", metavar="HH:MM",
                        help="stop at this time (UTC) and report the windows measured so far")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    tasks = 2000 if args.smoke else args.tasks
    deadline = parse_deadline(args.deadline)
    say(f"million tasks: {tasks} executions, slots {args.slots}, load average {harness.load_average()}, "
        f"nice {os.nice(0)}")
    with harness.sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        if args.own_services:
            local = stack.enter_context(own_services("million", keep=args.keep))
            kafka, pg = local.kafka, local.pg
        else:
            kafka, pg = args.kafka, args.pg
            harness.check_services(kafka, pg)
        windows = run(tasks, args.slots, kafka, pg, args.keep, deadline)
        passed = report(windows, tasks)
    return 0 if passed or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
