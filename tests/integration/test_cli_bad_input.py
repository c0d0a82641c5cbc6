"""Bad input and services out of reach, as a careless user meets them through the CLI (issue 18).

One case per input: task bodies and headers (from argv, stdin), Kafka or PostgreSQL out of reach for each command
group (explicit endpoints on a closed port: the shared local services stay up), a DSN with a password, app names
whose topics collide. For each: the exit code, the exact one-line message, no traceback, and nothing published
(no TaskCreated of the case's app on the events topic; for `scalebox run`, no task topic created either).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import REPO, free_port

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import admin_config, reader_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC, ensure_app_topics, ensure_shared_topics, task_topic

KAFKA_HINT = "(is it running? try: scalebox local up, or check --kafka / SCALEBOX_KAFKA)"
PG_HINT = "(try: scalebox local up, or check --pg / SCALEBOX_PG)"
PASSWORD = "s3cret-Pa55"
BIG = 1024 * 1024


@dataclass(frozen=True)
class Ctx:
    """What a case is built from: the services, closed endpoints, a fresh app name and a directory."""

    kafka: str
    pg: str
    closed_kafka: str
    closed_pg_port: int
    app: str
    deployed: str
    """An app whose module `m` has its task topic (so `task add` would publish to it)."""
    tmp: Path

    @property
    def closed_pg(self) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.closed_pg_port}/scalebox"

    @property
    def closed_pg_at(self) -> str:
        return f"127.0.0.1:{self.closed_pg_port}/scalebox"

    def app_file(self, extra: str = "") -> str:
        path = self.tmp / f"{self.app}.yaml"
        path.write_text(f"name: {self.app}\nmodules:\n  m:\n    command: /bin/true\n{extra}")
        return str(path)

    def up(self) -> list[str]:
        return ["--kafka", self.kafka, "--pg", self.pg]

    def kafka_down(self) -> list[str]:
        return ["--kafka", self.closed_kafka, "--pg", self.pg]

    def pg_down(self) -> list[str]:
        return ["--kafka", self.kafka, "--pg", self.closed_pg]


Args = list[str | bytes]


@dataclass(frozen=True)
class Case:
    """A command line (and stdin), and what it must end with."""

    args: Callable[[Ctx], Args]
    message: Callable[[Ctx], str]
    code: int = 2
    stdin: bytes | None = None


def _add(ctx: Ctx, *bodies: str | bytes, headers: Args = ()) -> Args:
    return ["task", "add", "--app", ctx.deployed, "--module", "m", *headers, *bodies, *ctx.up()]


def _kafka_down(ctx: Ctx, cluster: str = "") -> str:
    return f"cannot reach Kafka at {ctx.closed_kafka}{cluster}: connection refused {KAFKA_HINT}"


def _pg_down(ctx: Ctx) -> str:
    return f"cannot reach PostgreSQL at {ctx.closed_pg_at}: connection refused {PG_HINT}"


def _mirror_app(ctx: Ctx) -> str:
    path = ctx.tmp / "split.yaml"
    path.write_text(f"name: {ctx.app}\ncluster: home\nmodules:\n  a: {{command: /bin/true, sink_modules: [b]}}\n"
                    "  b: {command: /bin/true, cluster: far}\n")
    return str(path)


OVER = "the task body is 1048576 bytes, over the limit of 65536 bytes (MAX_BODY_BYTES)"
NOT_UTF8 = "the task body is not valid UTF-8 (undecodable byte at character 2)"

CASES: dict[str, Case] = {
    # bodies
    "body-1MB-stdin-task-add": Case(lambda c: _add(c, "-"), lambda c: OVER, stdin=b"a" * BIG + b"\n"),
    "body-1MB-stdin-run": Case(lambda c: ["run", c.app_file(), "-", *c.up()], lambda c: OVER,
                               stdin=b"a" * BIG + b"\n"),
    "body-over-limit-argv": Case(lambda c: _add(c, "b" * 70_000),
                                 lambda c: "the task body is 70000 bytes, over the limit of 65536 bytes "
                                           "(MAX_BODY_BYTES)"),
    "body-nul-stdin-task-add": Case(lambda c: _add(c, "-"),
                                    lambda c: "the task body contains a NUL byte (at character 1)",
                                    stdin=b"a\x00b\n"),
    "body-nul-stdin-run": Case(lambda c: ["run", c.app_file(), "-", *c.up()],
                               lambda c: "task 2 of 2: the task body contains a NUL byte (at character 3)",
                               stdin=b"fine\nbad\x00\n"),
    "body-not-utf8-stdin": Case(lambda c: _add(c, "-"), lambda c: NOT_UTF8, stdin=b"ab\xff\xfe\n"),
    "body-not-utf8-argv-task-add": Case(lambda c: _add(c, b"ab\xffcd"), lambda c: NOT_UTF8),
    "body-not-utf8-argv-run": Case(lambda c: ["run", c.app_file(), b"ab\xc3(", *c.up()], lambda c: NOT_UTF8),
    "body-start-task-in-app-file": Case(
        lambda c: ["run", c.app_file(f"    start_task: ['{'x' * 70_000}']\n"), *c.up()],
        lambda c: f"{c.tmp / c.app}.yaml:5: modules.m.start_task.0: the task body is 70000 bytes, over the limit "
                  "of 65536 bytes (MAX_BODY_BYTES)"),
    # headers
    "header-bad-key": Case(lambda c: _add(c, "x", headers=["-h", "bad key=1"]),
                           lambda c: "bad header key 'bad key': use letters, digits, '_', '.' and '-' (not "
                                     "starting with '.' or '-')"),
    "header-key-dot-first": Case(lambda c: ["run", c.app_file(), "x", "-H", ".k=1", *c.up()],
                                 lambda c: "bad header key '.k': use letters, digits, '_', '.' and '-' (not "
                                           "starting with '.' or '-')"),
    "header-no-equals": Case(lambda c: _add(c, "x", headers=["-h", "novalue"]),
                             lambda c: "bad header 'novalue': expected key=value"),
    "header-oversized": Case(lambda c: _add(c, "x", headers=["-h", "k=" + "v" * 17_000]),
                             lambda c: "the headers are 17008 bytes as JSON, over the limit of 16384 bytes "
                                       "(MAX_HEADERS_BYTES)"),
    "header-value-not-utf8": Case(lambda c: _add(c, "x", headers=["-h", b"k=\xff"]),
                                  lambda c: "header 'k' is not valid UTF-8 (undecodable byte at character 0)"),
    "header-key-not-utf8-run": Case(lambda c: ["run", c.app_file(), "x", "-H", b"k\xff=1", *c.up()],
                                    lambda c: "header key 'k\\udcff' is not valid UTF-8 (undecodable byte at "
                                              "character 1)"),
    # Kafka out of reach, one case per command group
    "kafka-down-task-add": Case(lambda c: ["task", "add", "--app", c.app, "--module", "m", "x", *c.kafka_down()],
                                _kafka_down, code=1),
    "kafka-down-module-suspend": Case(lambda c: ["module", "suspend", "--app", c.app, "--module", "m",
                                                 *c.kafka_down()], _kafka_down, code=1),
    "kafka-down-app-clean": Case(lambda c: ["app", "clean", c.app, "--kafka", c.closed_kafka], _kafka_down, code=1),
    "kafka-down-run": Case(lambda c: ["run", c.app_file(), "x", *c.kafka_down()], _kafka_down, code=1),
    "kafka-down-projector": Case(lambda c: ["projector", "--until-caught-up", *c.kafka_down()], _kafka_down,
                                 code=1),
    "kafka-down-replay": Case(lambda c: ["replay", "--yes", *c.kafka_down()], _kafka_down, code=1),
    "kafka-down-agent": Case(lambda c: ["agent", "--app", c.app, "--module", "m", "--app-file", c.app_file(),
                                        "--kafka", c.closed_kafka], _kafka_down, code=1),
    "kafka-down-mirror-cluster": Case(lambda c: ["mirror", _mirror_app(c), "-c", f"far={c.closed_kafka}",
                                                 "--kafka", c.kafka], lambda c: _kafka_down(c, " (cluster far)"),
                                      code=1),
    # PostgreSQL out of reach (the DSN has a password: the message never shows it)
    "pg-down-status": Case(lambda c: ["status", *c.pg_down()], _pg_down, code=1),
    "pg-down-task-list": Case(lambda c: ["task", "list", *c.pg_down()], _pg_down, code=1),
    "pg-down-task-show": Case(lambda c: ["task", "show", "0123456789", *c.pg_down()], _pg_down, code=1),
    "pg-down-task-lineage": Case(lambda c: ["task", "lineage", "0123456789", *c.pg_down()], _pg_down, code=1),
    "pg-down-app-list": Case(lambda c: ["app", "list", *c.pg_down()], _pg_down, code=1),
    "pg-down-run": Case(lambda c: ["run", c.app_file(), "x", *c.pg_down()], _pg_down, code=1),
    "pg-down-replay": Case(lambda c: ["replay", "--yes", "--kafka", c.kafka, "--pg", c.closed_pg], _pg_down, code=1),
    "pg-wrong-role-and-password": Case(
        lambda c: ["status", "--kafka", c.kafka, "--pg", c.pg.replace("postgresql://postgres@",
                                                                      f"postgresql://intruder:{PASSWORD}@")],
        lambda c: f"PostgreSQL at {c.pg.rsplit('@', 1)[1].split('?')[0]} refused the connection: "
                  + ('password authentication failed for user "intruder"' if "passfile=" in c.pg  # the secure pair
                     else 'role "intruder" does not exist') + " (check --pg / SCALEBOX_PG)", code=1),
    "pg-dsn-not-parseable": Case(
        lambda c: ["status", "--kafka", c.kafka, "--pg", f"user=postgres password={PASSWORD} garbage"],
        lambda c: "invalid PostgreSQL DSN user=postgres password=*** garbage: missing \"=\" after \"garbage\" in "
                  "connection info string (check --pg / SCALEBOX_PG)", code=1),
    # app names whose topics collide with a deployed app's
    "colliding-app-and-module-names": Case(
        lambda c: ["run", _colliding(c), "x", *c.up()],
        lambda c: f"app '{c.app}_b' cannot be deployed: its topic names collide with those of a deployed app "
                  f"(sbx.tasks.{c.app}_b.c with sbx.tasks.{c.app}.b_c); Kafka treats '.' and '_' in topic names "
                  "alike: rename the app or the module"),
}


def _colliding(ctx: Ctx) -> str:
    """App `<app>_b` with module `c`, after app `<app>` with module `b_c` is deployed (its topic exists)."""
    ensure_app_topics(AdminClient(admin_config(ctx.kafka)), ctx.app, ["b_c"])
    path = ctx.tmp / "colliding.yaml"
    path.write_text(f"name: {ctx.app}_b\nmodules:\n  c:\n    command: /bin/true\n")
    return str(path)


def _cli(args: Args, stdin: bytes | None, extra_env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """`scalebox ARGS` with no services in the environment (each case names its endpoints)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SCALEBOX_KAFKA", "SCALEBOX_PG")}
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env, cwd=REPO)


def _marks(bootstrap: str) -> dict[int, int]:
    """The events topic's end offsets, per partition."""
    consumer = Consumer(reader_config(bootstrap, "test-bad-input"))
    try:
        partitions = consumer.list_topics(EVENTS_TOPIC, timeout=30).topics[EVENTS_TOPIC].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(EVENTS_TOPIC, p), timeout=30)[1]
                for p in partitions}
    finally:
        consumer.close()


def _task_created_since(bootstrap: str, marks: dict[int, int], apps: set[str]) -> list[str]:
    """Task ids of TaskCreated events of `apps` written (committed or not) after `marks`."""
    ends = _marks(bootstrap)
    pending = {p for p, end in ends.items() if end > marks.get(p, 0)}
    if not pending:
        return []
    consumer = Consumer(reader_config(bootstrap, "test-bad-input", **{"isolation.level": "read_uncommitted",
                                                                    "enable.partition.eof": True}))
    consumer.assign([TopicPartition(EVENTS_TOPIC, p, marks.get(p, 0)) for p in pending])
    codec, found = EventCodec(), []
    try:
        while pending:
            message = consumer.poll(10)
            assert message is not None, "the events topic did not answer"
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                continue
            if message.offset() >= ends[message.partition()] - 1:
                pending.discard(message.partition())
            event = codec.decode(message.value())
            if event.event_type == "TaskCreated" and event.app in apps:
                found.append(event.task_id)
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="module")
def deployed(kafka_bootstrap: str) -> str:
    """An app whose module `m` has its task topic: `task add` would publish to it."""
    app = f"bi{uuid.uuid4().hex[:8]}"
    admin = AdminClient(admin_config(kafka_bootstrap))
    ensure_shared_topics(admin)
    ensure_app_topics(admin, app, ["m"])
    return app


@pytest.fixture(scope="module")
def closed_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line_and_nothing_is_published(name: str, tmp_path: Path, kafka_bootstrap: str,
                                                                   pg_dsn: str, deployed: str,
                                                                   closed_ports: tuple[int, int]) -> None:
    case = CASES[name]
    ctx = Ctx(kafka_bootstrap, pg_dsn, f"127.0.0.1:{closed_ports[0]}", closed_ports[1],
              f"bi{uuid.uuid4().hex[:8]}", deployed, tmp_path)
    marks = _marks(kafka_bootstrap)
    result = _cli(case.args(ctx), case.stdin)
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    lines = stderr.strip().splitlines()
    assert (result.returncode, lines) == (case.code, [f"error: {case.message(ctx)}"]), stderr
    assert "Traceback" not in stderr and PASSWORD not in stderr + result.stdout.decode(errors="replace")
    apps = {ctx.app, f"{ctx.app}_b", deployed}
    assert _task_created_since(kafka_bootstrap, marks, apps) == []
    topics = AdminClient(admin_config(kafka_bootstrap)).list_topics(timeout=30).topics
    assert [t for t in topics if t.startswith((f"sbx.tasks.{ctx.app}.", f"sbx.tasks.{ctx.app}_b."))] == (
        [task_topic(ctx.app, "b_c")] if name == "colliding-app-and-module-names" else [])


def test_markup_in_a_body_prints_verbatim_and_lineage_shows_each_status(tmp_path: Path, kafka_bootstrap: str,
                                                                        pg_dsn: str) -> None:
    """A body `[bold]x` is shown as typed (rich would take it for a style tag), and `task lineage` shows each
    task's `[succeeded]`; the app file's warning is printed once, prefixed `warning:`."""
    app = f"bi{uuid.uuid4().hex[:8]}"
    path = tmp_path / "app.yaml"
    path.write_text(f"name: {app}\nmodules:\n  m:\n    command: /bin/true\n    arguments:\n      slot_options: x\n")
    env = {"COLUMNS": "300"}
    ran = _cli(["run", str(path), "[bold]x", "--kafka", kafka_bootstrap, "--pg", pg_dsn], None, env, timeout=300)
    stderr = ran.stderr.decode()
    assert ran.returncode == 0, stderr
    warning = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: {path}:6: modules.m.arguments.slot_options: unknown slot option 'x' ignored "
                       "(known: slot_on_head, tmpfs_workdir, disable_local_mapping, disable_data_mapping, "
                       "always_running, reserved_on_exit, wrap_debug, enable_trace, async_task_creation, "
                       "with_headers, hide_local_ip)"]
    validated = _cli(["app", "validate", str(path)], None)
    assert validated.stderr.decode().splitlines() == warning and validated.returncode == 0
    listed = _cli(["task", "list", "--app", app, "--kafka", kafka_bootstrap, "--pg", pg_dsn], None, env)
    assert listed.returncode == 0 and "[bold]x" in listed.stdout.decode(), listed.stdout.decode()
    (task_id,) = [line.split()[0] for line in listed.stdout.decode().splitlines() if "[bold]x" in line]
    lineage = _cli(["task", "lineage", task_id, "--kafka", kafka_bootstrap, "--pg", pg_dsn], None, env)
    assert lineage.returncode == 0, lineage.stderr.decode()
    assert f"m {task_id[:8]} '[bold]x' [succeeded]" in lineage.stdout.decode()
    shown = _cli(["task", "show", task_id, "--kafka", kafka_bootstrap, "--pg", pg_dsn], None, env)
    assert "body: '[bold]x'" in shown.stdout.decode()


def test_a_run_stops_waiting_for_a_start_task_whose_task_created_was_dead_lettered(kafka_bootstrap: str,
                                                                                  pg_dsn: str) -> None:
    """The NUL-body case of issue 18, past the CLI's own check: a TaskCreated the projector cannot take is
    dead-lettered, and the run's watch names it instead of waiting forever for the task."""
    from confluent_kafka import Producer
    from pipeline import scalebox

    from scalebox_stream.events import Event, new_task_id
    from scalebox_stream.kafka.config import producer_config
    from scalebox_stream.launch.dead_letters import DeadLetterWatch
    from scalebox_stream.launch.errors import OperationError

    app = f"bi{uuid.uuid4().hex[:8]}"
    ensure_shared_topics(AdminClient(admin_config(kafka_bootstrap)))
    watch = DeadLetterWatch(kafka_bootstrap, app, grace_s=600.0)
    try:
        task_id = new_task_id()
        event = Event("TaskCreated", app, {"body": "a\x00b", "headers": {}, "parent_task_id": None,
                                           "not_before": None, "topic": task_topic(app, "m"), "task_created_at": 0},
                      module="m", task_id=task_id, attempt=1, producer="test")
        producer = Producer(producer_config(kafka_bootstrap))
        producer.produce(EVENTS_TOPIC, key=task_id, value=EventCodec().encode(event))
        assert producer.flush(30) == 0
        projected = scalebox(["projector", "--until-caught-up"], kafka_bootstrap, pg_dsn)
        assert projected.code == 0, projected.stderr
        watch.expect([task_id])
        with pytest.raises(OperationError) as stuck:
            for _ in range(100):
                watch.check((1, []))
        assert str(stuck.value).startswith(f"an event of app '{app}' was dead-lettered, so the run cannot finish: "
                                           f"TaskCreated of task {task_id[:8]} (unprojectable: ")
    finally:
        watch.close()
