"""An agent whose membership the broker refuses, unnoticed by its consumer, joins again with a new consumer
and loses no task (see `policy.membership`)."""

from __future__ import annotations

import signal
import sys
import threading

from cluster import Cluster

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.loop import Agent, AgentOptions

TASKS = 40
LONG_AT, LONG = 12, "3"


class _SwitchedAgent(Agent):
    """A real agent whose membership can also be declared lost from outside, once: the librdkafka state it
    guards against (commits refused as from a non-member, for good) cannot be produced on demand."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.told = threading.Event()

    def _membership_lost(self) -> bool:
        return self.told.is_set() or super()._membership_lost()

    def _rejoin(self) -> None:
        self.told.clear()
        super()._rejoin()


def test_an_agent_that_joins_again_with_a_new_consumer_loses_no_task(tmp_path, kafka_bootstrap, pg_dsn):
    """The switch is thrown while a long task runs: its attempt, still running under the old consumer, is
    recorded lost and run again, and its late report is not published (the partition is held again by then,
    under a new assignment)."""
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "rejoin", "work", "[/bin/sh, -c, 'sleep \"$0\"']")
    agent = _SwitchedAgent(c.spec, AgentIdentity(c.spec.name, "work"), kafka_bootstrap,
                           AgentOptions(slots=2, work_root=tmp_path / "work"))
    bodies = [LONG if i == LONG_AT else "0.05" for i in range(TASKS)]
    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            roots = c.send("work", bodies)
            long_task = roots[LONG_AT]
            c.wait_for("SELECT 1 FROM task_runs WHERE task_id = %s AND started_at IS NOT NULL", long_task)
            outcome["first_consumer"] = agent.consumer
            agent.told.set()
            (outcome["module"],) = c.wait(roots, timeout_s=120).modules
            outcome["last_consumer"] = agent.consumer
            outcome["long"] = c.query("SELECT attempt, status FROM task_runs WHERE task_id = %s ORDER BY attempt",
                                      long_task)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc
        finally:
            agent.request_stop()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    interval = sys.getswitchinterval()
    try:
        c.start_projector()
        driver = threading.Thread(target=drive)
        driver.start()
        agent.run()  # in the main thread: it installs signal handlers
        driver.join()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(interval)
        c.close()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    module = outcome["module"]
    assert (module["succeeded"], module["failed"]) == (TASKS, 0)  # type: ignore[index]
    assert not agent.told.is_set()  # the agent acted on it
    assert outcome["last_consumer"] is not outcome["first_consumer"]
    assert agent.assignments >= 2
    assert outcome["long"] == [(1, "lost"), (2, "succeeded")]
    succeeded = c.query("SELECT count(*), count(DISTINCT task_id) FROM task_runs WHERE app = %s AND exit_code = 0",
                        c.spec.name)
    assert succeeded == [(TASKS, TASKS)]  # one succeeded attempt per task
