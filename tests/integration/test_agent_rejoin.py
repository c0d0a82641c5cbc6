"""An agent whose membership the broker has dropped, unnoticed by its consumer, joins again with a new consumer
and loses no task (see `policy.membership`); and the watch that notices it, against the real broker."""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid

from cluster import Cluster
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.loop import Agent, AgentOptions
from scalebox_stream.kafka.group_watch import MembershipWatch

TASKS = 40
LONG_AT, LONG = 12, "3"


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def test_the_watch_sees_a_member_the_broker_no_longer_counts(kafka_bootstrap):
    topic, group = f"sbx.test.watch-{uuid.uuid4().hex[:8]}", f"sbx.test.watch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    consumer.subscribe([topic])
    member = {"id": ""}
    watch = MembershipWatch(admin, group, lambda: member["id"], interval_s=0.2, rejoin_after_s=1.0)
    try:
        _wait(lambda: consumer.poll(0.1) is None and bool(consumer.assignment()), 30, "consumer never joined")
        assert watch.present() is False  # no member id known yet: absent, whatever the group holds
        member["id"] = consumer.memberid()
        assert watch.present() is True
        watch.start()
        time.sleep(1.5)
        assert not watch.lost() and watch.absent_for() == 0.0
        consumer.close()  # the member leaves; the id the watch asks about stays
        _wait(watch.lost, 10, "the watch never saw the member gone")
        assert watch.absent_for() >= 1.0
        watch.reset()
        assert not watch.lost()
    finally:
        watch.close()


class _LostWhenTold:
    """The agent's real watch, plus a switch that makes it report the membership lost once (the librdkafka
    state this guards against cannot be produced on demand)."""

    def __init__(self, watch: MembershipWatch) -> None:
        self.watch, self.told, self.group = watch, threading.Event(), watch.group

    def start(self) -> None:
        self.watch.start()

    def close(self) -> None:
        self.watch.close()

    def lost(self) -> bool:
        return self.told.is_set() or self.watch.lost()

    def reset(self) -> None:
        self.told.clear()
        self.watch.reset()

    def absent_for(self) -> float:
        return self.watch.absent_for()


def test_an_agent_that_joins_again_with_a_new_consumer_loses_no_task(tmp_path, kafka_bootstrap, pg_dsn):
    """The switch is thrown while a long task runs: its attempt, still running under the old consumer, is
    recorded lost and run again, and its late report is not published (the partition is held again by then,
    under a new assignment)."""
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "rejoin", "work", "[/bin/sh, -c, 'sleep \"$0\"']")
    agent = Agent(c.spec, AgentIdentity(c.spec.name, "work"), kafka_bootstrap,
                  AgentOptions(slots=2, work_root=tmp_path / "work"))
    switch = _LostWhenTold(agent.membership)
    agent.membership = switch
    bodies = [LONG if i == LONG_AT else "0.05" for i in range(TASKS)]
    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            roots = c.send("work", bodies)
            long_task = roots[LONG_AT]
            c.wait_for("SELECT 1 FROM task_runs WHERE task_id = %s AND started_at IS NOT NULL", long_task)
            outcome["first_member"] = agent.member_id
            switch.told.set()
            (outcome["module"],) = c.wait(roots, timeout_s=120).modules
            outcome["last_member"] = agent.member_id
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
    assert not switch.told.is_set()  # the agent acted on it
    assert outcome["last_member"] and outcome["last_member"] != outcome["first_member"]
    assert agent.assignments >= 2
    assert outcome["long"] == [(1, "lost"), (2, "succeeded")]
    succeeded = c.query("SELECT count(*), count(DISTINCT task_id) FROM task_runs WHERE app = %s AND exit_code = 0",
                        c.spec.name)
    assert succeeded == [(TASKS, TASKS)]  # one succeeded attempt per task
