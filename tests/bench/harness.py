"""Shared pieces of the benchmarks: services, a deployed app driven like production, spawn baselines,
percentiles, the result rows and the cleanup of every process a benchmark starts.

Not a benchmark itself; `bench_engine.py`, `bench_latency.py`, the peer benchmarks and `run_all.py` import it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import testpath  # noqa: F401  (tests/ on sys.path: `support`)
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cpu_account import machine_cpu
from support import verify

from scalebox_stream.events import EventCodec
from scalebox_stream.executors.output import ProgramOutput
from scalebox_stream.kafka import cleanup
from scalebox_stream.kafka.config import admin_config, producer_config, secured
from scalebox_stream.kafka.task_publisher import flush_or_fail, publish_task
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics
from scalebox_stream.launch.children import Child, Children
from scalebox_stream.launch.deploy import deploy
from scalebox_stream.local import postgres as local_postgres
from scalebox_stream.projector.migrate import migrate
from scalebox_stream.spec import load_app

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:15432/scalebox"
TRUE = "/bin/true"
EMIT_SCRIPT = 'printf "%s\\n" "$0" > "$WORK_DIR/sink-tasks.txt"'
"""Stage work that emits its body to the next module: `sh -c SCRIPT BODY HEADERS` (printf is a builtin)."""
EMIT_ARGV = ["/bin/sh", "-c", EMIT_SCRIPT]
TERMINAL = ("succeeded", "failed")


# ----- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary: a number, its in-run baseline, the ratio and the goal."""

    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    ratio: float | None
    goal: str
    passed: bool | None  # None: informational, no goal


def fmt_row(row: Row) -> list[str]:
    """The row as table cells."""
    verdict = {True: "PASS", False: "FAIL", None: "-"}[row.passed]
    base = "-" if row.baseline is None else f"{row.baseline:,.1f} ({row.baseline_name})"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    value = "n/a" if math.isnan(row.value) else f"{row.value:,.{2 if abs(row.value) < 10 else 1}f} {row.unit}"
    return [row.name, value, base, ratio, row.goal, verdict]


def print_table(rows: Sequence[Row], title: str) -> None:
    """A plain-text table of rows."""
    cells = [["benchmark", "number", "baseline (same run)", "ratio", "goal", "result"], *map(fmt_row, rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100, nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def say(text: str) -> None:
    """Progress output, flushed."""
    print(text, flush=True)


# ----- arguments and services ----------------------------------------------------------------------


def add_service_args(parser: argparse.ArgumentParser) -> None:
    """--kafka / --pg, defaulting to $SCALEBOX_KAFKA / $SCALEBOX_PG or the local services."""
    parser.add_argument("--kafka", default=os.environ.get("SCALEBOX_KAFKA", DEFAULT_KAFKA))
    parser.add_argument("--pg", default=os.environ.get("SCALEBOX_PG") or local_pg_dsn())


def local_pg_dsn() -> str:
    """The running local PostgreSQL's DSN (with its password file when the home is secure), else DEFAULT_PG."""
    running = local_postgres.running()
    return running.dsn if running is not None else DEFAULT_PG


def parse_ints(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]."""
    return [int(x) for x in text.split(",") if x.strip()]


def check_services(kafka: str, pg: str, wait_s: float = 60.0) -> None:
    """Wait up to `wait_s` for Kafka and PostgreSQL to answer; raise a clear error if they do not."""
    host, _, port = kafka.split(",")[0].rpartition(":")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with psycopg.connect(pg, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
                return
        except (OSError, psycopg.Error) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"services not reachable (Kafka {kafka}, PostgreSQL {pg}): {exc}; "
                                   "start them with `.venv/bin/scalebox local up`") from exc
            time.sleep(2)


def load_average() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews every number)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_until_idle(max_busy: float = 0.15, settled_s: float = 2.0, timeout_s: float = 60.0) -> str:
    """Wait until the machine has been at most `max_busy` busy for `settled_s` (what a run just before leaves
    behind, PostgreSQL's autovacuum and the broker's clean-up of deleted topics, competes with a measurement that
    wants an idle system), or `timeout_s` passed; says how it went."""
    started = time.monotonic()
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(settled_s)
        busy1, total1 = machine_cpu()
        busy = (busy1 - busy0) / max(1e-9, total1 - total0)
        waited = time.monotonic() - started
        if busy <= max_busy:
            return f"idle: {busy:.0%} busy over {settled_s:.0f}s, after {waited:.0f}s"
        if waited >= timeout_s:
            return f"not idle: still {busy:.0%} busy after {waited:.0f}s"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks stop every child."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def bench_dir(kind: str) -> Path:
    """A fresh directory for one benchmark's app files and logs."""
    return Path(tempfile.mkdtemp(prefix=f"sbx-bench-{kind}-"))


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal a child started with start_new_session=True, wait, then SIGKILL its whole group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers (pool workers, grandchildren)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# ----- spawn baselines -----------------------------------------------------------------------------


def spawn_rate(argv: list[str], n: int, how: str = "subprocess") -> float:
    """Serial spawns per second of `argv`: `subprocess` (subprocess.run), `agent-like` (Popen in a new
    session, output through pipes read until it exits, like the process executor), `posix_spawn` or `fork`
    (os.fork + execv)."""
    started = time.perf_counter()
    if how == "subprocess":
        for _ in range(n):
            subprocess.run(argv, check=True)
    elif how == "agent-like":
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        with tempfile.TemporaryDirectory() as work:
            for _ in range(n):
                with ProgramOutput() as output:
                    proc = subprocess.Popen(argv, cwd=work, env={**env, "WORK_DIR": work}, stdin=subprocess.DEVNULL,
                                            stdout=output.stdout_w, stderr=output.stderr_w, start_new_session=True)
                    output.spawned()
                    output.read_until_exit(proc.pid)
                    if proc.wait() != 0:
                        raise RuntimeError(f"{argv} failed")
    elif how == "posix_spawn":
        for _ in range(n):
            pid = os.posix_spawn(argv[0], argv, os.environ)
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
                raise RuntimeError(f"{argv} failed")
    elif how == "fork":
        for _ in range(n):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                try:
                    os.execv(argv[0], argv)
                finally:
                    os._exit(127)
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
                raise RuntimeError(f"{argv} failed")
    else:
        raise ValueError(how)
    return n / (time.perf_counter() - started)


def emit_argv(work_dir: str) -> tuple[list[str], dict[str, str]]:
    """The stage-a command as the agent runs it (argv with body and headers, env with WORK_DIR)."""
    return [*EMIT_ARGV, "17", "{}"], {**os.environ, "WORK_DIR": work_dir}


# ----- a deployed app, driven like `scalebox run` --------------------------------------------------


def events_high_watermarks(kafka: str) -> dict[int, int]:
    """partition -> end offset of the events topic (where a fresh private projection starts)."""
    consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"sbx.bench.watermarks.{tag()}",
                                 "enable.auto.commit": False, "log_level": 2}))
    try:
        meta = consumer.list_topics(EVENTS_TOPIC, timeout=10).topics[EVENTS_TOPIC]
        return {p: consumer.get_watermark_offsets(TopicPartition(EVENTS_TOPIC, p), timeout=10)[1]
                for p in meta.partitions}
    finally:
        consumer.close()


def private_database(kafka: str, pg: str, name: str) -> str:
    """A fresh projection database whose stored positions are the current end of the events topic, so a
    projector started on it projects only what happens from now on; its DSN."""
    dsn = verify.create_database(pg, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        for partition, offset in events_high_watermarks(kafka).items():
            conn.execute("INSERT INTO projector_offsets (topic, partition, next_offset) VALUES (%s, %s, %s)",
                         (EVENTS_TOPIC, partition, offset))
    return dsn


@dataclass
class Deployment:
    """An app deployed on the services with its projector and one agent per module as child processes.

    With `private` (the default) the projection goes to a fresh database `sbx_bench_<tag>` projected by a
    projector of its own consumer group (tests/bench/private_projector.py, production's Projector class):
    the shared `sbx.projector` group stalls for up to its session timeout whenever another run on these
    services kills a projector, which would land in our numbers. Without it, `scalebox projector` on `pg`.
    """

    app_file: Path
    kafka: str
    pg: str
    log_dir: Path
    work_root: Path
    private: bool = True
    keep_db: bool = False
    children: Children = field(init=False)
    agents: dict[str, Child] = field(init=False, default_factory=dict)
    projector: Child | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.spec = load_app(self.app_file)
        self.tag = tag()
        self.db_name = f"sbx_bench_{self.tag}" if self.private else None
        ensure_app_topics(AdminClient(admin_config(self.kafka)), self.app, list(self.spec.modules))
        self.dsn = private_database(self.kafka, self.pg, self.db_name) if self.db_name else self.pg
        deploy(self.spec, (), self.kafka, self.dsn)
        self.children = Children(self.log_dir, {"SCALEBOX_KAFKA": self.kafka, "SCALEBOX_PG": self.dsn})
        self.producer = Producer(producer_config(self.kafka, log_level=2))
        self.codec = EventCodec()

    @property
    def app(self) -> str:
        """The app name."""
        return self.spec.name

    def start(self, slots: int, agent_args: Sequence[str] = ()) -> None:
        """Start the projector and one agent per module with `slots` slots (like `scalebox run`); `agent_args`
        are added to every agent's command line (e.g. --consumer-config debug=fetch)."""
        if self.private:
            log_path = self.log_dir / "projector.log"
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("private_projector.py")), "--kafka", self.kafka,
                     "--pg", self.dsn, "--group", f"sbx.bench.projector.{self.tag}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.children.env,
                    start_new_session=True, cwd=REPO)
            self.projector = Child("projector", process, log_path)
            self.children.children.append(self.projector)
        else:
            self.projector = self.children.start("projector", ["projector"])
        for name in self.spec.modules:
            self.agents[name] = self.children.start(f"agent-{name}", [
                "agent", "--app", self.app, "--module", name, "--app-file", str(self.app_file),
                "--slots", str(slots), "--work-root", str(self.work_root), *agent_args])

    def check_children(self) -> None:
        """Raise if a child died."""
        dead = self.children.first_dead()
        if dead is not None:
            raise RuntimeError(f"{dead.name} exited with code {dead.exited()}:\n{dead.log_tail()}")

    def send(self, module: str, bodies: Sequence[str]) -> list[str]:
        """Publish tasks and wait for Kafka's acknowledgement; their ids."""
        ids = [publish_task(self.producer, self.codec, self.app, module, b, producer_id="bench") for b in bodies]
        flush_or_fail(self.producer)
        return ids

    def terminal_counts(self, conn: psycopg.Connection) -> tuple[int, int]:
        """(terminal, failed) tasks of the app in the projection."""
        row = conn.execute("""SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FILTER (WHERE status = 'failed')
                              FROM tasks WHERE app = %s""", (list(TERMINAL), self.app)).fetchone()
        return int(row[0]), int(row[1])

    def wait_terminal(self, expected: int, timeout_s: float, poll_s: float = 0.1,
                      on_poll: Callable[[psycopg.Connection], None] | None = None,
                      cap_s: float | None = None) -> float:
        """Wait until `expected` tasks of the app are terminal in the projection; time.time() when seen.
        With `cap_s`, stop waiting (without error) after that many seconds."""
        cap = None if cap_s is None else time.monotonic() + cap_s
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                done, failed = self.terminal_counts(conn)
                if on_poll is not None:
                    on_poll(conn)
                if done >= expected:
                    if failed:
                        raise RuntimeError(f"{failed} task(s) of {self.app} failed; logs in {self.log_dir}")
                    return time.time()
                self.check_children()
                if cap is not None and time.monotonic() > cap:
                    return time.time()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.app}: {done}/{expected} terminal after {timeout_s:.0f}s; "
                                       f"logs in {self.log_dir}")
                time.sleep(poll_s)

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Rows of a query on the projection."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL of their process groups); delete the app's topics and
        consumer groups; drop the private database."""
        try:
            self.children.stop(grace_s=10)
            self.producer.flush(5)
            forget(self.kafka, groups=[f"sbx.bench.projector.{self.tag}"], app=self.app)
        finally:
            if self.db_name and not self.keep_db:
                verify.drop_database(self.pg, self.db_name)


def forget(kafka: str, topics: Sequence[str] = (), groups: Sequence[str] = (), app: str | None = None) -> None:
    """Delete what a run left on the broker: `topics`, `groups` and, with `app`, the app's task topics and agent
    groups (a broker holding thousands of partitions starts and answers metadata slowly). Failures are reported,
    not raised: the numbers stand."""
    admin = AdminClient(admin_config(kafka))
    steps: list[Callable[[], None]] = [lambda: cleanup.delete_groups(admin, list(groups)),
                                       lambda: cleanup.delete_topics(admin, list(topics))]
    if app is not None:
        steps.append(lambda: cleanup.remove(admin, cleanup.find_leftovers(admin, app)))
    for step in steps:
        try:
            step()
        except Exception as exc:
            say(f"could not delete all of the run's topics and groups: {exc}")


def write_app(path: Path, name: str, modules: list[tuple[str, list[str], str | None]], slots: int) -> Path:
    """An app.yaml with process-executor modules (name, command, sink) in order."""
    lines = [f"name: {name}", "modules:"]
    for module, command, sink in modules:
        lines.append(f"  {module}:")
        lines.append("    command: [" + ", ".join(_yaml_str(c) for c in command) + "]")
        lines.append("    executor: process")
        lines.append(f"    slots: {slots}")
        if sink:
            lines.append(f"    sink_modules: [{sink}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tag() -> str:
    """A short unique suffix for app, group and database names."""
    return uuid.uuid4().hex[:8]
