"""Bad input never loses a task nor hangs an agent: many bad tasks and poison records in one run, on real Kafka,
PostgreSQL and Docker.

One app, three agents: `m` (a shell program that misbehaves as its body says, with an admission check and a
retry rule), `gone` (a command that does not exist) and `d` (a Docker image that does not exist). Tasks are sent
as the CLI sends them; poison records are written straight onto `m`'s task topic, bypassing every CLI check (a
TaskCreated among them also onto the events topic, as a careless client would). Afterwards: each task's recorded
outcome and message, every task terminal in the projection, each poison record on the dead-letter topic with its
fault named and counted by the agent's metrics, and every agent stopped by SIGTERM within its grace period.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from cluster import Cluster
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from docker_fixtures import *  # noqa: F403
from pipeline import free_port

from scalebox_stream.agent.limits import MAX_SINK_LINE_BYTES, MAX_SINK_LINES
from scalebox_stream.events import Event
from scalebox_stream.kafka.config import secured
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, task_topic

GRACE_S = 5
PROGRAM = r"""#!/bin/sh
cd "$WORK_DIR"
case "$1" in
exit-*) exit "${1#exit-}" ;;
selfkill) kill -9 $$ ;;
sleep) sleep 60 ;;
missing) exec /nonexistent/program ;;
lines) seq 100000 > sink-tasks.txt ;;
longline) head -c 2000000 /dev/zero | tr '\0' y > sink-tasks.txt ;;
nulline) printf 'a\000b\n' > sink-tasks.txt ;;
badheader) printf '%s\n' 'x,{"bad key!":"v"}' > sink-tasks.txt ;;
loop) ln -s custom-out.txt custom-out.txt ;;
zero) ln -s /dev/zero custom-out.txt ;;
fifo) mkfifo custom-out.txt ;;
notjson) printf '{not json' > task-exec.json ;;
hugejson) head -c 10000000 /dev/zero | tr '\0' ' ' > task-exec.json ;;
nulout) printf 'before\000after' ;;
msgnul) printf '{"messageText": "a\\u0000b"}' > task-exec.json ;;
msgsurrogate) printf '{"messageText": "\\udcff"}' > task-exec.json ;;
labelnul) printf '2023-10-24T10:00:00Z,a\000b\n' > timestamps.txt ;;
badutf8) printf 'a\377\376b' ;;
hugestatus) printf '{"statusCode": 100000000000000000000000}' > task-exec.json ;;
child) echo child-ok > sink-tasks.txt ;;
esac
"""
CHECK = """#!/bin/sh
printf '%s' "$1" > "{dir}/$(printf '%s' "$1" | md5sum | cut -c1-32)"
"""
WEIRD_BODIES = ["'; echo pwned; '", "$(touch /tmp/sbx-pwned) `id`", "line one\nline two\ttab", "--help",
                "ü ✓ 😀 \u2028 \x0b", "w" * 60_000]
"""Bodies the check script and the program take verbatim (each succeeds)."""


def _program_cases() -> dict[str, tuple]:
    """body -> (task status, last run status, exit code, error (a prefix), runs)."""
    return {
        "exit-0": ("succeeded", "succeeded", 0, None, 1),
        "exit-1": ("failed", "failed", 1, None, 1),
        "exit-124": ("failed", "failed", 124, None, 1),
        "exit-137": ("failed", "failed", 137, None, 1),
        "exit-75": ("failed", "failed", 75, None, 2),  # the retry rule: one more attempt, then failed
        "selfkill": ("failed", "failed", 137, None, 1),
        "sleep": ("failed", "timed_out", 124, None, 1),
        "missing": ("failed", "failed", 127, None, 1),
        "lines": ("failed", "error", 0, f"sink-tasks.txt has 100000 lines; the limit is {MAX_SINK_LINES}", 1),
        "longline": ("failed", "error", 0,
                     f"sink-tasks.txt line 1 is 2000000 bytes; the limit is {MAX_SINK_LINE_BYTES}", 1),
        "nulline": ("failed", "error", 0, "sink-tasks.txt line 1: ", 1),
        "badheader": ("failed", "error", 0, "sink-tasks.txt line 1: ", 1),
        "loop": ("failed", "error", 0, "custom-out.txt is a symbolic link: not read", 1),
        "zero": ("failed", "error", 0, "custom-out.txt is a symbolic link: not read", 1),
        "fifo": ("failed", "error", 0, "custom-out.txt is a FIFO: not read", 1),
        "notjson": ("succeeded", "succeeded", 0, "task-exec.json: ", 1),
        "hugejson": ("succeeded", "succeeded", 0, "task-exec.json is larger than ", 1),
        "nulout": ("succeeded", "succeeded", 0, None, 1),  # stdout with a NUL: escaped, not refused by PostgreSQL
        "msgnul": ("succeeded", "succeeded", 0, None, 1),
        "msgsurrogate": ("succeeded", "succeeded", 0, None, 1),
        "labelnul": ("succeeded", "succeeded", 0, None, 1),
        "badutf8": ("succeeded", "succeeded", 0, None, 1),
        # the report cannot be built (no event carries that status code): the attempt still ends, as an error
        "hugestatus": ("failed", "error", 125, "the attempt crashed: ValueError: 100000000000000000000000 (type ", 1),
        "child": ("succeeded", "succeeded", 0, None, 1),
        **{body: ("succeeded", "succeeded", 0, None, 1) for body in WEIRD_BODIES},
    }


def _created(app: str, module: str, task_id: str | None = None, attempt: int = 1, body: str = "ok",
             headers: dict | None = None, not_before: int | None = None, parent: str | None = None) -> Event:
    return Event("TaskCreated", app, {"body": body, "headers": headers or {}, "parent_task_id": parent,
                                      "not_before": not_before, "topic": task_topic(app, module),
                                      "task_created_at": 0},
                 module=module, task_id=task_id or str(uuid.uuid4()), attempt=attempt, producer="injector")


def _poison(cluster: Cluster) -> dict[str, tuple[bytes | None, str, bool, str | None]]:
    """name -> (record value, the fault the dead-letter record names (a prefix), also on the events topic,
    the task id a TaskFailed must end (or None))."""
    app, codec = cluster.spec.name, cluster.codec
    out: dict[str, tuple[bytes | None, str, bool, str | None]] = {}

    def task(name: str, fault: str, fails: bool, on_events: bool = True, **kw: object) -> None:
        event = _created(kw.pop("app", app), kw.pop("module", "m"), **kw)  # type: ignore[arg-type]
        out[name] = (codec.encode(event), f"invalid task: {fault}", on_events, event.task_id if fails else None)

    out["non-utf8"] = (b"\xff\xfe\xfd\xfc", "not Avro single-object encoded", False, None)
    out["garbage"] = (b"\x13" + os.urandom(300), "not Avro single-object encoded", False, None)
    out["empty"] = (None, "not Avro single-object encoded", False, None)
    out["avro-junk"] = (codec.header + b"\xff" * 40, "corrupt Avro record", False, None)  # a known schema, junk
    out["unknown-schema"] = (b"\xc3\x01" + b"\x00" * 8 + b"junk", "unknown writer schema fingerprint", False, None)
    failed = Event("TaskFailed", app, {"attempts": 1, "reason": "x"}, module="m", task_id=str(uuid.uuid4()), attempt=1)
    out["not-a-task"] = (codec.encode(failed), "expected TaskCreated, got TaskFailed", False, None)
    task("nul-body", "the task body contains a NUL byte (at character 1)", True, body="a\x00b")
    task("other-module", "module 'other' is not this agent's module 'm'", False, on_events=False, module="other")
    task("attempt-minus-5", "attempt -5 is outside 1..10000", True, attempt=-5)
    task("not-before-2^62", f"not_before {2**62} is not a time within a year from now", True, not_before=2**62)
    task("non-uuid-id", "task_id 'task-1' is not a UUID", False, task_id="task-1")
    task("megabyte-body", "the task body is 1000000 bytes, over the limit of 65536 bytes", True, body="b" * 1_000_000)
    task("nul-header", "header 'k' contains a NUL byte", True, headers={"k": "a\x00b"})
    task("other-app", "app 'someone-else' is not this agent's app", False, on_events=False, app="someone-else")
    task("non-uuid-parent", "parent_task_id 'p' is not a UUID", True, parent="p")
    return out


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} on port {port}")


def _dead_letters(kafka: str, start: dict[int, int], topic: str) -> dict[bytes, tuple[dict, bytes]]:
    """Dead-letter records from `topic` since `start` (partition -> offset): key -> (headers, value)."""
    consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"dlq-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False, "enable.partition.eof": True}))
    try:
        consumer.assign([TopicPartition(DEAD_LETTER_TOPIC, p, o) for p, o in start.items()])
        ends, found = set(start), {}
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        ends.discard(message.partition())
                    continue
                headers = dict(message.headers() or [])
                if headers.get("source_topic") == topic.encode():
                    found[message.key() or b""] = (headers, message.value() or b"")
        return found
    finally:
        consumer.close()


def _dead_letter_ends(kafka: str) -> dict[int, int]:
    consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"dlq-{uuid.uuid4().hex}"}))
    try:
        partitions = consumer.list_topics(DEAD_LETTER_TOPIC, timeout=30).topics[DEAD_LETTER_TOPIC].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(DEAD_LETTER_TOPIC, p), timeout=30)[1]
                for p in partitions}
    finally:
        consumer.close()


@pytest.mark.usefixtures("docker_available")
def test_bad_tasks_and_poison_records_all_end_and_no_agent_hangs(tmp_path: Path, kafka_bootstrap, pg_dsn):
    checked = tmp_path / "checked"
    checked.mkdir()
    (tmp_path / "prog.sh").write_text(PROGRAM)
    (tmp_path / "check.sh").write_text(CHECK.replace("{dir}", str(checked)))
    for script in ("prog.sh", "check.sh"):
        (tmp_path / script).chmod(0o755)
    app = f"badin-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n"
        f"  m:\n    command: [{tmp_path / 'prog.sh'}]\n    check: [{tmp_path / 'check.sh'}]\n"
        "    sink_modules: [m]\n    task_max_seconds: 3\n"
        "    retry:\n      max_attempts: 3\n      rules:\n        - exit_codes: [75]\n          retries: 1\n"
        "  gone:\n    command: [/nonexistent/program]\n"
        "  d:\n    image: localhost:1/sbx-no-such-image:none\n    command: [/bin/true]\n")
    cluster = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    topic = task_topic(app, "m")
    dlq_start = _dead_letter_ends(kafka_bootstrap)
    port = free_port()
    try:
        agents = [cluster.start_agent("m", 4, "--grace", str(GRACE_S), "--metrics-port", str(port)),
                  cluster.start_agent("gone", 1, "--grace", str(GRACE_S)),
                  cluster.start_agent("d", 1, "--grace", str(GRACE_S))]
        cluster.start_projector()
        cases = _program_cases()
        bodies = list(cases)
        ids = dict(zip(bodies, cluster.send("m", bodies), strict=True))
        (gone_id,) = cluster.send("gone", ["x"])
        (docker_id,) = cluster.send("d", ["x"])

        poison = _poison(cluster)
        raw = Producer(secured({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000}))
        for name, (value, _, on_events, _) in poison.items():
            raw.produce(topic, key=f"case-{name}".encode(), value=value, partition=0)
            if on_events:
                raw.produce(EVENTS_TOPIC, key=f"case-{name}".encode(), value=value)
        (after_id,) = cluster.send("m", ["after-poison"])
        assert raw.flush(30) == 0

        roots = [*ids.values(), gone_id, docker_id, after_id]
        cluster.wait(roots, timeout_s=180)
        ended = {task_id for _, _, _, task_id in poison.values() if task_id is not None}
        cluster.wait_for("SELECT 1 WHERE (SELECT count(*) FROM tasks WHERE task_id = ANY(%s::uuid[]) "
                         "AND status = 'failed') = (SELECT count(*) FROM tasks WHERE task_id = ANY(%s::uuid[]))",
                         list(ended), list(ended), timeout_s=60)
        dead_letters = _metric(port, "scalebox_agent_dead_letters_total")
        for agent in agents:  # every agent stops within its grace period
            began = time.monotonic()
            assert cluster.terminate(agent, timeout_s=GRACE_S + 20) == 0
            assert time.monotonic() - began < GRACE_S + 10
        rows = {str(task_id): row for task_id, *row in cluster.query(
            "SELECT t.task_id, t.status, r.status, r.exit_code, r.error, t.attempts FROM tasks t "
            "JOIN task_runs r ON r.task_id = t.task_id AND r.attempt = t.attempts WHERE t.app = %s", app)}
        statuses = cluster.query("SELECT status, count(*) FROM tasks WHERE app = %s GROUP BY status", app)
        texts = {str(task_id): row for task_id, *row in cluster.query(
            "SELECT task_id, stdout, message_text, user_timestamps::text FROM task_runs "
            "WHERE task_id = ANY(%s::uuid[])",
            [ids[b] for b in ("nulout", "msgnul", "msgsurrogate", "labelnul")])}
    finally:
        cluster.close()

    # every task of the app is terminal in the projection: none stays created or running
    assert {status for status, _ in statuses} <= {"succeeded", "failed"}, statuses
    for body, (task_status, run_status, exit_code, error, attempts) in cases.items():
        got = rows[ids[body]]
        assert (got[0], got[1], got[2], got[4]) == (task_status, run_status, exit_code, attempts), (body, got)
        if error is None:
            assert got[3] is None, (body, got)
        else:
            assert got[3] is not None and got[3].startswith(error), (body, got)
    assert tuple(rows[gone_id][:3]) == ("failed", "error", 127)
    assert rows[gone_id][3].startswith("command not found: [Errno 2] No such file or directory: '/nonexistent/program'")
    assert tuple(rows[docker_id][:3]) == ("failed", "error", 125)
    assert rows[docker_id][3].startswith("image not found: localhost:1/sbx-no-such-image:none")
    assert tuple(rows[after_id][:2]) == ("succeeded", "succeeded")

    assert texts[ids["nulout"]][0] == "before\\x00after"
    assert texts[ids["msgnul"]][1] == "a\\x00b" and texts[ids["msgsurrogate"]][1] == "\\udcff"
    assert '"a\\\\x00b"' in texts[ids["labelnul"]][2]

    # the check script got each weird body verbatim, and no body was run by a shell
    for body in WEIRD_BODIES:
        assert (checked / hashlib.md5(body.encode()).hexdigest()).read_text() == body
    assert not Path("/tmp/sbx-pwned").exists()

    # poison: on the dead-letter topic with the fault named, counted; a sound task of this module is ended
    found = _dead_letters(kafka_bootstrap, dlq_start, topic)
    for name, (value, fault, _, task_id) in poison.items():
        headers, parked = found[f"case-{name}".encode()]
        assert headers["error"].decode().startswith(fault), (name, headers["error"])
        if name == "megabyte-body":  # too large for the dead-letter topic whole: its head, marked
            assert parked == value[:65536] and headers["truncated"].startswith(
                f"the report could not be published: a record for {DEAD_LETTER_TOPIC} (".encode())
        else:
            assert parked == (value or b""), name
        if task_id is not None:
            assert rows.get(task_id, ["failed"])[0] == "failed", name
    assert dead_letters == len(poison)
