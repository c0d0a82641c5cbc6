"""A TaskRunner with the process executor: the in-task tools are on the program's PATH, the tasks they add
become the attempt's children only when it succeeds, and the program's environment has Scalebox's names."""

from __future__ import annotations

import json
import uuid

from fakes.tools import FakeStateHandler

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.events import EventCodec, EventStamp
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()
SCRIPT = r"""
scalebox task add -H k=v --sink-module calc "a,b {c}" || exit 3
send-message "$(scalebox task get-header marker)" || exit 4
v=$(scalebox semaphore increment s) || exit 5
printf '%s|%s|%s|%s|%s' "$v" "$APP_ID" "$MODULE_ID" "$TASK_TIMEOUT_SECONDS" "$FROM_IP" > custom-out.txt
exit "$1"
"""


def _runner(tmp_path, handler=None) -> TaskRunner:
    app = tmp_path / "app.yaml"
    app.write_text("name: tr\nmain_router: calc\nmodules:\n  m:\n    executor: process\n    task_max_seconds: 30\n"
                   f"    command: [/bin/sh, -c, {json.dumps(SCRIPT)}, sh]\n"
                   "  calc:\n    executor: process\n    command: [/bin/true]\n")
    return TaskRunner(load_app(app), AgentIdentity("tr", "m", agent_id="h-1-abc"), ProcessExecutor(), CODEC,
                      tmp_path / "work", tool_handler=handler)


def _run(runner: TaskRunner, body: str):
    created = EventStamp("tr", producer="t").task_created(str(uuid.uuid4()), "m", body,
                                                         {"marker": "m1", "from_ip": "10.0.0.9"}, "sbx.tasks.tr.m")
    report = runner.run(TaskMessage(created, created.payload.topic, 0, 0), 0, lambda _: None)
    return [(r.topic, CODEC.decode(r.value)) for r in report.records]


def test_tool_calls_become_children_of_a_succeeding_attempt(tmp_path):
    runner = _runner(tmp_path, FakeStateHandler({"s": 1}))
    try:
        (_, finished), *rest = _run(runner, "0")
        assert finished.payload.exit_code == 0, finished.payload.stderr
        assert finished.payload.custom_out == "2|tr|m|30|10.0.0.9"
        children = [e for topic, e in rest if topic == "sbx.tasks.tr.calc"]
        assert [(c.payload.body, c.payload.headers.get("k")) for c in children] == [("a,b {c}", "v"), ("m1", None)]
        assert finished.payload.emitted_task_ids == [c.task_id for c in children]
    finally:
        runner.close()


def test_a_failing_attempt_sends_nothing_its_tools_added(tmp_path):
    runner = _runner(tmp_path, FakeStateHandler({"s": 1}))
    try:
        records = _run(runner, "1")
        assert records[0][1].payload.exit_code == 1
        assert [e.event_type for _, e in records] == ["TaskFinished", "TaskFailed"]
        assert records[0][1].payload.emitted_task_ids == []
    finally:
        runner.close()


def test_without_tools_the_program_has_no_channel(tmp_path):
    app = tmp_path / "app.yaml"
    app.write_text("name: tr\nmodules:\n  m:\n    executor: process\n"
                   "    command: [/bin/sh, -c, 'test -z \"$SBX_CHANNEL\"']\n")
    runner = TaskRunner(load_app(app), AgentIdentity("tr", "m", agent_id="h-1-abc"), ProcessExecutor(), CODEC,
                        tmp_path / "work", in_task_tools=False)
    assert _run(runner, "x")[0][1].payload.exit_code == 0
