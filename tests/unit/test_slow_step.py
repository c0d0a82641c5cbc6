"""A start-up step that waits long says what it waits for (`policy.slow_step`, `agent.startup`)."""

from __future__ import annotations

import logging
import time

import pytest

from scalebox_stream.agent.startup import slow_step
from scalebox_stream.policy.slow_step import SlowStep


def test_a_quick_step_says_nothing() -> None:
    step = SlowStep("making topics", started=100.0, hint="is the broker up?")
    assert step.due(104.9) is None
    assert step.done(104.9) is None


def test_a_slow_step_says_what_it_waits_for_then_reminds_further_apart_then_when_done() -> None:
    step = SlowStep("starting the transactional producer", started=0.0, hint="is the broker up?")
    said = [(t, line) for t in range(0, 400) if (line := step.due(float(t)))]
    assert said[0] == (5, "start-up: still starting the transactional producer after 5 s (is the broker up?)")
    assert [t for t, _ in said] == [5, 30, 80, 180, 300]
    assert said[1][1] == "start-up: still starting the transactional producer after 30 s", "the hint once"
    assert step.done(412.0) == "start-up: done starting the transactional producer after 6 min"


def test_the_edge_logs_while_the_body_waits(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="scalebox_stream.agent.startup"):
        with slow_step("waiting for a test", "a hint", first_s=0.05):
            time.sleep(0.3)
        with slow_step("not waiting", first_s=0.05):
            pass
        time.sleep(0.1)
    said = [r.getMessage() for r in caplog.records if r.name == "scalebox_stream.agent.startup"]
    assert said == ["start-up: still waiting for a test after 0 s (a hint)",
                    "start-up: done waiting for a test after 0 s"]
