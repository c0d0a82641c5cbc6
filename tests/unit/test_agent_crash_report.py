"""An attempt that raises still ends in a report: a TaskFinished `error` naming the cause, then the retry rules; a
report that cannot even be built falls back to TaskFinished + TaskFailed (real TaskRunner and slots, fake Kafka)."""

from __future__ import annotations

import time
import uuid

from fakes.agent import P0, parts

from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.slots import Slots
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()
IDENTITY = AgentIdentity("app", "m", host="h1", cluster="c1", agent_id="agent-c")
RETRY = "    retry:\n      max_attempts: 3\n      rules:\n        - exit_codes: '*'\n          retries: 2\n"


def _runner(tmp_path, extra: str = "") -> TaskRunner:
    app = tmp_path / "app.yaml"
    app.write_text(f"name: app\nmodules:\n  m:\n    command: [/bin/true]\n    executor: process\n{extra}")
    return TaskRunner(load_app(app), IDENTITY, ProcessExecutor(), CODEC, tmp_path / "work")


def _task(offset: int = 0, attempt: int = 1) -> TaskMessage:
    created = Event("TaskCreated", "app", {"body": "x", "headers": {}, "parent_task_id": None, "not_before": None,
                                           "topic": P0[0]}, module="m", task_id=str(uuid.uuid4()), attempt=attempt)
    return TaskMessage(created, P0[0], P0[1], offset, assignment=1)


def _events(records) -> list[Event]:
    return [CODEC.decode(r.value) for r in records]


def test_a_crash_is_an_error_naming_its_cause_without_a_traceback_and_is_retried_under_the_rules(tmp_path):
    task = _task()
    report = _runner(tmp_path, RETRY).crash_report(task, 0, RuntimeError("boom"))
    finished, retry, again = _events(report.records)
    assert report.outcome == "error"
    assert finished.event_type == "TaskFinished" and finished.task_id == task.event.task_id
    assert finished.payload["outcome"] == "error" and finished.payload["exit_code"] == 125
    assert finished.payload["error"] == "the attempt crashed: RuntimeError: boom"
    assert "Traceback" not in finished.payload["error"]
    assert retry.event_type == "TaskRetryScheduled" and retry.payload["next_attempt"] == 2
    assert again.event_type == "TaskCreated" and again.attempt == 2 and again.payload["body"] == "x"
    assert report.records[2].topic == P0[0]


def test_a_crash_without_retries_left_fails_the_task(tmp_path):
    report = _runner(tmp_path).crash_report(_task(), 0, OSError(40, "Too many levels of symbolic links"))
    finished, failed = _events(report.records)
    assert finished.payload["outcome"] == "error" and failed.event_type == "TaskFailed"
    assert failed.payload["reason"] == ("error: exit code 125; the attempt crashed: OSError: [Errno 40] Too many "
                                        "levels of symbolic links")


def test_a_report_that_cannot_be_built_falls_back_to_finished_and_failed(tmp_path, monkeypatch):
    runner = _runner(tmp_path, RETRY)

    def overflow(*_):
        raise OverflowError("int too large to convert")

    monkeypatch.setattr(runner, "_follow_up", overflow)  # e.g. a retry delay no event can carry
    report = runner.crash_report(_task(), 0, ValueError("bad"))
    finished, failed = _events(report.records)
    assert (finished.event_type, failed.event_type) == ("TaskFinished", "TaskFailed")
    assert "ValueError: bad" in failed.payload["reason"] and "OverflowError" in failed.payload["reason"]
    assert failed.payload["attempts"] == 1 and report.outcome == "error"


def test_a_cause_that_no_event_or_table_could_carry_is_sanitized(tmp_path):
    cause = ValueError("nul \x00 surrogate \udcff " + "y" * 10_000)
    report = _runner(tmp_path).crash_report(_task(), 0, cause)
    finished, _ = _events(report.records)
    error = finished.payload["error"]
    assert "\x00" not in error and "\\x00" in error and "\\udcff" in error and len(error) < 4200


def test_an_unpublishable_reports_replacement_is_finished_and_failed_without_retry(tmp_path):
    report = _runner(tmp_path, RETRY).crash_report(_task(), 2, "the report could not be published: too large",
                                                  may_retry=False)
    finished, failed = _events(report.records)
    assert finished.payload["error"] == "the report could not be published: too large"
    assert failed.event_type == "TaskFailed"


class _Admission:
    active = True

    def __init__(self) -> None:
        self.released: list = []

    def check(self, event, slot=0):
        raise UnicodeEncodeError("utf-8", "\x00", 0, 1, "surrogates not allowed")

    def release(self, token) -> None:
        raise OSError("bad token")  # releasing fails too: the report must still go out


def test_a_slot_whose_admission_check_raises_reports_the_task_and_takes_the_next(tmp_path):
    p = parts(slots=1)
    p.consumer.assign(P0)
    tasks = [_task(offset) for offset in range(2)]
    for t in tasks:
        p.checkpoint.trackers[P0].start(t.offset)
        p.dispatcher.add(t)
    control = ModuleControl(IDENTITY, None, p.dispatcher.lock, p.checkpoint.put, lambda e: None)
    slots = Slots(1, p.dispatcher, _runner(tmp_path), _Admission(), p.checkpoint, control, AgentTelemetry(IDENTITY))
    slots.start_waiting()
    deadline = time.monotonic() + 5
    while p.checkpoint._done.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    events = _events([type("R", (), {"value": r[2]}) for r in txn.records])
    assert [(e.task_id, e.event_type) for e in events] == [
        (t.event.task_id, kind) for t in tasks for kind in ("TaskFinished", "TaskFailed")]
    assert all("UnicodeEncodeError" in e.payload["error"] for e in events if e.event_type == "TaskFinished")
    assert p.broker.committed[P0] == (2, "") and p.dispatcher.in_flight == 0
    slots.shutdown()
