"""A slot's acceptance of a task travels in its TaskStarted; a TaskAccepted goes out only for an attempt
whose program never starts (real processes, no Kafka)."""

from __future__ import annotations

import uuid

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()


def _runner(tmp_path, command: str) -> TaskRunner:
    app = tmp_path / "app.yaml"
    app.write_text(f"name: acc\nmodules:\n  m:\n    command: [{command}]\n    executor: process\n")
    spec = load_app(app)
    return TaskRunner(spec, AgentIdentity("acc", "m"), ProcessExecutor(), CODEC, tmp_path / "work")


def _task(accepted_at: int | None) -> TaskMessage:
    created = Event("TaskCreated", "acc", {"body": "x", "headers": {}, "parent_task_id": None, "not_before": None,
                                           "topic": "sbx.tasks.acc.m"}, module="m", task_id=str(uuid.uuid4()),
                    attempt=1)
    return TaskMessage(created, "sbx.tasks.acc.m", 2, 41, accepted_at=accepted_at)


def _events(records) -> list[Event]:
    return [CODEC.decode(r.value) for r in records if r.topic == "sbx.events"]


def test_the_start_carries_the_acceptance(tmp_path):
    early: list = []
    report = _runner(tmp_path, "/bin/true").run(_task(accepted_at=1_000), 3, early.append)
    (started,) = _events(early)
    assert started.event_type == "TaskStarted"
    assert {k: started.payload[k] for k in ("accepted_at", "topic", "partition", "offset", "slot")} == {
        "accepted_at": 1_000, "topic": "sbx.tasks.acc.m", "partition": 2, "offset": 41, "slot": 3}
    assert "TaskAccepted" not in {e.event_type for e in _events(report.records)}


def test_an_acceptance_already_reported_is_not_repeated(tmp_path):
    early: list = []
    _runner(tmp_path, "/bin/true").run(_task(accepted_at=None), 0, early.append)
    (started,) = _events(early)
    assert started.payload["accepted_at"] is None and started.payload["offset"] == -1


def test_a_program_that_never_starts_gets_a_task_accepted_ahead_of_its_report(tmp_path):
    early: list = []
    report = _runner(tmp_path, "/nonexistent/program").run(_task(accepted_at=2_000), 1, early.append)
    assert early == []  # no TaskStarted
    events = _events(report.records)
    assert [e.event_type for e in events][:2] == ["TaskAccepted", "TaskFinished"]
    assert events[0].occurred_at == 2_000 and events[0].payload["offset"] == 41
    assert events[1].payload["exit_code"] == 127
