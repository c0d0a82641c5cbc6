"""`launch.children.Children.supervise`: a child that ends unexpectedly is restarted the same way, after the
policy's backoff, without blocking; the supervisor gives up with an error naming it. Real (tiny) processes, a
fake clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scalebox_stream.config import CliSettings
from scalebox_stream.launch.children import Children, restart_policy
from scalebox_stream.policy.restarts import RestartPolicy

CHILD = """import os, signal, sys, time
print("started", *sys.argv[1:], flush=True)
what = sys.argv[1]
if what == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
elif what == "sleep":
    time.sleep(60)
sys.exit(int(what))
"""
"""A child whose first argument says how it ends: `kill` (SIGKILL), `sleep` (it runs on), or an exit code."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def children_of(tmp_path: Path, clock: Clock, policy: RestartPolicy | None = None) -> Children:
    children = Children(tmp_path, {}, policy, clock=clock)
    children.command = [sys.executable, "-c", CHILD]
    return children


def test_a_killed_child_is_restarted_with_its_arguments_and_log_after_the_backoff(tmp_path, clock) -> None:
    children = children_of(tmp_path, clock)
    child = children.start("agent-calc", ["kill", "x"])
    first = child.process
    first.wait()
    said: list[str] = []
    assert children.supervise(said.append) == [], "the restart waits for its backoff"
    assert said == ["agent-calc exited with code -9 (signal SIGKILL); restarting it in 1 s (restart 1 of 5 in 10 min)"]
    clock.now += 0.5
    assert children.supervise(said.append) == [] and child.process is first, "not yet due"
    clock.now += 0.5
    assert children.supervise(said.append) == [child]
    assert child.process is not first and child.args == ["kill", "x"]
    child.process.wait()
    clock.now += 0.1
    children.supervise(said.append)
    assert said[-1] == ("agent-calc exited with code -9 (signal SIGKILL); restarting it in 2 s "
                        "(restart 2 of 5 in 10 min)")
    log = child.log_path.read_text().splitlines()
    assert [line for line in log if line.startswith("started")] == ["started kill x", "started kill x"], \
        "the restart appends to the same log"
    assert any(line.endswith("SUPERVISOR: agent-calc exited with code -9 (signal SIGKILL); restarting it in 1 s "
                             "(restart 1 of 5 in 10 min)") for line in log)
    assert any(f"SUPERVISOR: restarted agent-calc (pid {child.process.pid})" in line for line in log)
    children.stop(0.0)
    assert child.restart_at is None, "stopping calls a pending restart off"


def test_a_child_that_keeps_crashing_is_given_up_on_with_an_error_naming_it(tmp_path, clock) -> None:
    children = children_of(tmp_path, clock, RestartPolicy(limit=1, window_s=60))
    child = children.start("projector", ["1"])
    child.process.wait()
    children.supervise(lambda _: None)
    clock.now += 1
    assert children.supervise(lambda _: None) == [child]
    child.process.wait()
    with pytest.raises(RuntimeError, match=r"^projector exited with code 1, not restarted \(restarted 1 time\(s\) "
                                           r"in 1 min already, the limit\):\n(.*\n)*started 1$"):
        children.supervise(lambda _: None)
    clock.now += 61
    said: list[str] = []
    children.supervise(said.append)
    assert said == ["projector exited with code 1; restarting it in 1 s (restart 1 of 1 in 1 min)"], \
        "a restart out of the window no longer counts"
    children.stop(0.0)


def test_a_usage_error_is_not_restarted_and_an_agent_that_finished_is_left_alone(tmp_path, clock) -> None:
    children = children_of(tmp_path, clock)
    done = children.start("agent-done", ["0"])
    running = children.start("agent-busy", ["sleep"])
    done.process.wait()
    assert children.supervise() == [] and running.exited() is None
    bad = children.start("agent-bad", ["2"])
    bad.process.wait()
    with pytest.raises(RuntimeError, match="^agent-bad exited with code 2, not restarted .*configuration error"):
        children.supervise()
    children.stop(5.0)
    assert running.exited() is not None


def test_the_policy_comes_from_the_settings() -> None:
    settings = CliSettings.load(environ={"SCALEBOX_CHILD_RESTARTS": "2", "SCALEBOX_CHILD_RESTART_WINDOW_S": "30"})
    policy = restart_policy(settings)
    assert (policy.limit, policy.window_s) == (2, 30.0)
    assert restart_policy(CliSettings.load(environ={})).limit == 5
