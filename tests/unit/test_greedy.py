"""Scalebox's GREEDY slot (`task_min_seconds`): the pure rule, and the agent's module control obeying it."""

from __future__ import annotations

import threading

from fakes.agent import APP, CODEC, MODULE

from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import OutMessage
from scalebox_stream.kafka.control import Command
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.policy.greedy import GREEDY_STREAK, greedy_reason, short_streak

IDENTITY = AgentIdentity(APP, MODULE, host="h1", cluster="c1", agent_id="agent-1")


def test_a_streak_counts_short_attempts_in_a_row_and_a_long_one_ends_it():
    streak = 0
    for run_s in (0.1, 0.2, 0.1):
        streak = short_streak(streak, run_s, 2.0)
    assert streak == 3 and greedy_reason(0, streak, 2.0).startswith("GREEDY: slot 0 ran 3 attempts in a row")
    assert short_streak(streak, 2.0, 2.0) == 0, "an attempt as long as the minimum is real work"
    assert short_streak(5, 0.0, None) == 0 and short_streak(5, 0.0, 0) == 0, "no minimum, no streak"
    assert greedy_reason(1, GREEDY_STREAK - 1, 2.0) is None


def _control(records: list[OutMessage], min_s: float | None) -> ModuleControl:
    return ModuleControl(IDENTITY, None, threading.RLock(), records.append,
                         lambda e: OutMessage(EVENTS_TOPIC, e.task_id, CODEC.encode(e)), min_s)


def test_a_greedy_slot_suspends_the_module_on_its_agent_until_resumed():
    records: list[OutMessage] = []
    control = _control(records, 1.5)
    control.timed(0, 0.1)
    control.timed(1, 0.1)
    control.timed(0, 0.1)
    control.timed(0, 3.0)  # slot 0 did real work: its streak starts again
    control.timed(0, 0.1)
    control.timed(0, 0.1)
    assert not control.suspended and not records, "slots count on their own; no streak of 3 yet"
    control.timed(1, 0.2)
    control.timed(1, 0.3)
    assert control.suspended
    (state,) = [CODEC.decode(r.value).payload for r in records]
    assert state["state"] == "suspended" and state["reason"].startswith(
        "GREEDY: slot 1 ran 3 attempts in a row in less than task_min_seconds (1.5s)")
    assert all(r.topic == EVENTS_TOPIC for r in records), "only this agent stops: no suspend command for the others"
    control.obey([Command(APP, MODULE, "resume")])
    assert not control.suspended
    control.timed(1, 0.1)
    assert not control.suspended, "resuming forgets the streaks"


def test_without_task_min_seconds_nothing_is_greedy():
    records: list[OutMessage] = []
    control = _control(records, None)
    for _ in range(10):
        control.timed(0, 0.0)
    assert not control.suspended and not records


def test_task_min_seconds_is_read_without_a_warning_and_passed_to_tasks(tmp_path):
    import uuid

    from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
    from scalebox_stream.events import EventCodec, EventStamp
    from scalebox_stream.executors.process import ProcessExecutor
    from scalebox_stream.spec.loader import load_app

    (tmp_path / "app.yaml").write_text("name: g\nmodules:\n  m:\n    command: [/bin/sh, -c, 'echo $TASK_MIN_SECONDS']\n"
                                       "    executor: process\n    arguments: {task_min_seconds: 2.5}\n")
    spec = load_app(tmp_path / "app.yaml")
    assert spec.modules["m"].task_min_seconds == 2.5 and spec.warnings == ()
    codec = EventCodec()
    runner = TaskRunner(spec, AgentIdentity("g", "m", host="h1", cluster="c1", agent_id="a1"), ProcessExecutor(),
                        codec, tmp_path / "work")
    created = EventStamp("g", producer="cli").task_created(str(uuid.uuid4()), "m", "x", {}, "sbx.tasks.g.m")
    report = runner.run(TaskMessage(created, created.payload.topic, 0, 1), 0, lambda _: None)
    assert codec.decode(report.records[0].value).payload.stdout == "2.5\n"
