"""An attempt that leaves something unsafe or too large ends as an error with a clear reason, and every record
of its report can be published (real processes, no Kafka)."""

from __future__ import annotations

import uuid
from pathlib import Path

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.limits import MAX_RECORD_BYTES, MAX_SINK_LINE_BYTES, MAX_SINK_LINES, record_size
from scalebox_stream.agent.task_runner import AttemptReport, TaskMessage, TaskRunner
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()
SECRET = "host-secret-9f3c"


def _run(tmp_path: Path, script: str, extra: str = "", body: str = "x") -> tuple[AttemptReport, list[Event]]:
    (tmp_path / "prog.sh").write_text("#!/bin/sh\ncd \"$WORK_DIR\"\n" + script)
    (tmp_path / "prog.sh").chmod(0o755)
    (tmp_path / "app.yaml").write_text(f"name: lim\nmodules:\n  m:\n    command: [{tmp_path / 'prog.sh'}]\n"
                                       f"    executor: process\n    sink_modules: [m]\n{extra}")
    runner = TaskRunner(load_app(tmp_path / "app.yaml"), AgentIdentity("lim", "m"), ProcessExecutor(), CODEC,
                        tmp_path / "work")
    created = Event("TaskCreated", "lim", {"body": body, "headers": {}, "parent_task_id": None, "not_before": None,
                                           "topic": "sbx.tasks.lim.m"}, module="m", task_id=str(uuid.uuid4()),
                    attempt=1)
    report = runner.run(TaskMessage(created, "sbx.tasks.lim.m", 0, 7), 0, lambda _: None)
    assert all(record_size(r) <= MAX_RECORD_BYTES for r in report.records)
    return report, [CODEC.decode(r.value) for r in report.records if r.topic == "sbx.events"]


def _finished(events: list[Event]) -> dict:
    (finished,) = [e for e in events if e.event_type == "TaskFinished"]
    return finished.payload


def test_a_custom_out_linked_to_a_host_file_is_an_error_and_the_file_is_not_read(tmp_path):
    (tmp_path / "shadow").write_text(SECRET)
    report, events = _run(tmp_path, f"ln -s {tmp_path / 'shadow'} custom-out.txt\n")
    finished = _finished(events)
    assert (report.outcome, finished["error"], finished["custom_out"]) == (
        "error", "custom-out.txt is a symbolic link: not read", "")
    assert all(SECRET.encode() not in r.value for r in report.records)


def test_a_fifo_custom_out_is_an_error_at_once(tmp_path):
    report, events = _run(tmp_path, "mkfifo custom-out.txt\n")
    assert (report.outcome, _finished(events)["error"]) == ("error", "custom-out.txt is a FIFO: not read")


def test_too_many_sink_lines_fail_the_attempt_with_no_children(tmp_path):
    report, events = _run(tmp_path, "seq 100000 > sink-tasks.txt\n")
    finished = _finished(events)
    assert report.outcome == "error" and finished["emitted_task_ids"] == []
    assert finished["error"] == f"sink-tasks.txt has 100000 lines; the limit is {MAX_SINK_LINES}"
    assert {e.event_type for e in events} <= {"TaskFinished", "TaskRetryScheduled", "TaskFailed"}


def test_a_two_megabyte_sink_line_fails_the_attempt(tmp_path):
    report, events = _run(tmp_path, "head -c 2000000 /dev/zero | tr '\\0' y > sink-tasks.txt\n")
    assert _finished(events)["error"] == f"sink-tasks.txt line 1 is 2000000 bytes; the limit is {MAX_SINK_LINE_BYTES}"
    assert report.outcome == "error"


def test_the_most_sink_lines_allowed_are_published(tmp_path):
    report, events = _run(tmp_path, f"seq {MAX_SINK_LINES} > sink-tasks.txt\n")
    assert report.outcome == "succeeded" and len(_finished(events)["emitted_task_ids"]) == MAX_SINK_LINES


def test_a_report_too_large_for_kafka_is_sent_bare_as_an_error(tmp_path):
    """output_text_size: 256 KiB, and over half a MiB of bytes that are not UTF-8 on each stream (escaped)."""
    script = ("head -c 600000 /dev/zero | tr '\\0' '\\377'\nhead -c 600000 /dev/zero | tr '\\0' '\\377' >&2\n"
              "echo 1 > sink-tasks.txt\n")
    report, events = _run(tmp_path, script, extra="    output_text_size: 262144\n")
    finished = _finished(events)
    assert report.outcome == "error"
    assert finished["error"].startswith("the attempt's report cannot be published: a record for sbx.events is ")
    assert (finished["stdout"], finished["stderr"], finished["emitted_task_ids"]) == ("", "", [])
    assert (finished["stdout_bytes"], finished["stderr_bytes"]) == (600_000, 600_000)


def test_a_retry_too_large_to_send_ends_the_task_instead(tmp_path):
    """A task whose own body nearly fills a record: its retry (the same body, and a little more) cannot be sent."""
    _, events = _run(tmp_path, "exit 3\n", extra="    retry_rules: ['*']\n")
    assert [e.event_type for e in events] == ["TaskFinished", "TaskRetryScheduled"]
    report, events = _run(tmp_path, "exit 3\n", extra="    retry_rules: ['*']\n", body="b" * MAX_RECORD_BYTES)
    assert [e.event_type for e in events] == ["TaskFinished", "TaskFailed"]
    assert report.outcome == "error"
    assert _finished(events)["error"].startswith("the attempt's report cannot be published: a record for "
                                                 "sbx.tasks.lim.m is ")
