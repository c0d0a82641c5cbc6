"""A slot whose setup fails: the task fails with the setup's error under the retry rules, never re-checked
forever (real processes, no Kafka)."""

import uuid
from pathlib import Path

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.events import EventCodec, EventStamp
from scalebox_stream.executors.base import ExecResult
from scalebox_stream.executors.lifecycle import is_setup_failure
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()
IDENTITY = AgentIdentity("sf", "m", host="h1", cluster="c1", agent_id="h1-1-abc")


def _script(path: Path, text: str) -> None:
    path.write_text(f"#!/bin/sh\n{text}\n")
    path.chmod(0o755)


def _runner(tmp_path: Path, retries: int) -> TaskRunner:
    code = tmp_path / "code"
    code.mkdir()
    _script(code / "setup.sh", 'echo "setup ran" >> "$TRACE"; echo "no licence file" >&2; exit 3')
    _script(code / "check.sh", 'echo "check ran" >> "$TRACE"; exit 0')
    _script(code / "run.sh", 'echo "run ran" >> "$TRACE"')
    app = tmp_path / "app.yaml"
    app.write_text(f"name: sf\nmodules:\n  m:\n    executor: process\n    code_path: {code}\n"
                   f"    environments: [TRACE={tmp_path / 'trace'}]\n"
                   f"    retry: {{backoff: null, rules: [{{exit_codes: 3, retries: {retries}}}]}}\n")
    return TaskRunner(load_app(app), IDENTITY, ProcessExecutor(), CODEC, tmp_path / "work")


def test_a_failing_setup_admits_the_task_and_fails_it_with_the_setup_error(tmp_path):
    runner = _runner(tmp_path, retries=1)
    assert runner.has_runtime_check
    created = EventStamp("sf", producer="cli").task_created(str(uuid.uuid4()), "m", "x", {}, "sbx.tasks.sf.m")
    verdict = runner.check_in_runtime(created, 0)
    assert verdict.admitted, "a setup failure is not the check's refusal (it would be re-checked forever)"
    report = runner.run(TaskMessage(created, created.payload.topic, 0, 5), 0, lambda _: None)
    events = [CODEC.decode(r.value) for r in report.records]
    finished = events[0].payload
    assert (finished.outcome, finished.exit_code) == ("error", 3)
    assert finished.error.startswith("setup failed (") and "no licence file" in finished.error
    assert [e.event_type for e in events] == ["TaskFinished", "TaskRetryScheduled", "TaskCreated"], \
        "the module's retry rule applies"
    again = events[-1]
    assert runner.check_in_runtime(again, 0).admitted
    report = runner.run(TaskMessage(again, again.payload.topic, 0, 6), 0, lambda _: None)
    assert [CODEC.decode(r.value).event_type for r in report.records] == ["TaskFinished", "TaskFailed"]
    assert "run ran" not in (tmp_path / "trace").read_text() and "check ran" not in (tmp_path / "trace").read_text()


def test_a_setup_failure_is_told_from_a_program_error():
    assert is_setup_failure(ExecResult(exit_code=3, error="setup failed (sbx-action setup: exit code 3): x"))
    assert not is_setup_failure(ExecResult(exit_code=3, error="program not found"))
    assert not is_setup_failure(ExecResult(exit_code=3))
