"""Crashed agents, graceful stops, long tasks and poison input, on real Kafka and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest
from cluster import KILLABLE, Cluster, agent_pid
from confluent_kafka import Consumer, Producer, TopicPartition

from scalebox_stream.kafka.config import secured
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, task_topic

SLOW_THEN_EMIT = """#!/bin/sh
sleep "${SLEEP:-3}"
echo "ran $1" > "$WORK_DIR/custom-out.txt"
echo "next-$1" > "$WORK_DIR/sink-tasks.txt"
"""


@pytest.fixture
def cluster(tmp_path, kafka_bootstrap, pg_dsn):
    (tmp_path / "slow.sh").write_text(SLOW_THEN_EMIT)
    (tmp_path / "slow.sh").chmod(0o755)
    app = f"faults-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  work:\n    command: ./slow.sh\n    sink_modules: [done]\n"
        "    environments: {SLEEP: '${SLEEP:-3}'}\n  done:\n    command: [/bin/true]\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    c.start_projector()
    yield c
    c.close()


def _runs(cluster: Cluster, task_id: str) -> list[tuple]:
    return cluster.query("SELECT attempt, status, agent, exit_code FROM task_runs WHERE task_id = %s "
                         "ORDER BY attempt", task_id)


def test_sigkilled_agent_loses_nothing_and_outputs_once(cluster):
    agents = [cluster.start_agent("work", 1, *KILLABLE), cluster.start_agent("work", 1, *KILLABLE)]
    cluster.start_agent("done")
    (task_id,) = cluster.send("work", ["t1"])
    ((agent_id,),) = cluster.wait_for("SELECT agent FROM task_runs WHERE task_id = %s AND status = 'running'",
                                      task_id)
    victim = next(a for a in agents if a.process.pid == agent_pid(agent_id))
    killed_at = time.time()
    cluster.kill(victim)
    state = cluster.wait([task_id], timeout_s=120)
    runs = _runs(cluster, task_id)
    assert [(a, s) for a, s, _, _ in runs] == [(1, "lost"), (2, "succeeded")]
    assert runs[1][2] != agent_id, "the second attempt ran on the surviving agent"
    assert runs[0][3] == 123
    ((started,),) = cluster.query("SELECT extract(epoch FROM started_at)::float8 FROM task_runs "
                                  "WHERE task_id = %s AND attempt = 2", task_id)
    print(f"recovery time after SIGKILL: {started - killed_at:.1f}s (kill to the task running again)")
    children = cluster.query("SELECT child_task_id FROM task_edges WHERE parent_task_id = %s", task_id)
    assert len(children) == 1, "the next module received the output exactly once"
    assert {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules} == {"work": (1, 0), "done": (1, 0)}
    assert cluster.query("SELECT count(*) FROM tasks WHERE app = %s AND module = 'done'",
                         cluster.spec.name) == [(1,)]


def test_sigterm_lets_the_running_task_finish(cluster):
    agent = cluster.start_agent("work", 1, "--grace", "30")
    cluster.start_agent("done")
    (task_id,) = cluster.send("work", ["graceful"])
    cluster.wait_for("SELECT 1 FROM task_runs WHERE task_id = %s AND status = 'running'", task_id)
    assert cluster.terminate(agent) == 0
    runs = _runs(cluster, task_id)
    cluster.wait([task_id], timeout_s=60)
    runs = _runs(cluster, task_id)
    assert [(a, s) for a, s, _, _ in runs] == [(1, "succeeded")]


def test_sigterm_past_the_grace_period_hands_the_task_back(cluster):
    first = cluster.start_agent("work", 1, "--grace", "1")
    cluster.start_agent("done")
    (task_id,) = cluster.send("work", ["handed-back"])
    cluster.wait_for("SELECT 1 FROM task_runs WHERE task_id = %s AND status = 'running'", task_id)
    began = time.monotonic()
    assert cluster.terminate(first) == 0
    assert time.monotonic() - began < 15, "the agent did not stop after its grace period"
    cluster.start_agent("work")
    cluster.wait([task_id], timeout_s=90)
    assert [(a, s) for a, s, _, _ in _runs(cluster, task_id)] == [(1, "lost"), (2, "succeeded")]


def test_long_task_causes_no_rebalance_and_runs_once(tmp_path, kafka_bootstrap, pg_dsn):
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "long", "long", "[/bin/sh, -c, 'sleep 18']")
    try:
        c.start_projector()
        agent = c.start_agent("long", 1, "--consumer-config", "max.poll.interval.ms=10000")
        (task_id,) = c.send("long", ["x"])
        c.wait([task_id], timeout_s=120)
        assert [(a, s) for a, s, _, _ in _runs(c, task_id)] == [(1, "succeeded")]
        assert c.terminate(agent) == 0
        log = agent.log_path.read_text()
        assert log.count("partitions assigned") == 1, log
        assert log.count("partitions revoked") <= 1, log  # at most the one of the final shutdown
    finally:
        c.close()


def test_poison_message_goes_to_the_dead_letter_topic_and_the_agent_goes_on(cluster, kafka_bootstrap):
    cluster.start_agent("work")
    cluster.start_agent("done")
    topic = task_topic(cluster.spec.name, "work")
    producer = Producer(secured({"bootstrap.servers": kafka_bootstrap}))
    poison_key = f"poison-{uuid.uuid4().hex}"
    producer.produce(topic, key=poison_key, value=b"\x00not an avro event", partition=0)
    producer.flush(10)
    (task_id,) = cluster.send("work", ["after-poison"])
    cluster.wait([task_id], timeout_s=90)
    consumer = Consumer(secured({"bootstrap.servers": kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4().hex}",
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(DEAD_LETTER_TOPIC, 0, 0)])
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and not message.error() and message.key() == poison_key.encode():
            found = message
    consumer.close()
    assert found is not None, "the poison message is not on the dead-letter topic"
    headers = dict(found.headers())
    assert headers["source_topic"] == topic.encode() and b"magic" in headers["error"]
    assert found.value() == b"\x00not an avro event"
