"""Shared state from inside tasks, end to end: two agents x 4 slots call `scalebox semaphore increment-n` from
their tasks (the in-task tool, through the agent's state client) 2,000 times; the sum is exact, also with the
state owner SIGKILLed twice, and every call is answered once.

The owner and the agents use state topics of the test's own (`SCALEBOX_STATE_PREFIX`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from cluster import Cluster
from pipeline import list_tasks
from state_support import OwnerProcess, private_topics, replies_by_id, settled_item

from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import SEMAPHORE, StateTopics

TASKS, CALLS_PER_TASK = 80, 25
SCRIPT = """set -eu
i=0
while [ "$i" -lt {calls} ]; do
  v=$(scalebox semaphore increment-n hits "$1")
  printf '%s ' "$v" >> "$WORK_DIR/custom-out.txt"
  i=$((i + 1))
done
"""


@pytest.fixture
def topics(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> StateTopics:
    topics = private_topics(kafka_bootstrap)
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", topics.prefix)  # the agents inherit it
    return topics


def _cluster(tmp_path: Path, kafka: str, pg: str) -> Cluster:
    script = tmp_path / "inc.sh"
    script.write_text(SCRIPT.format(calls=CALLS_PER_TASK))
    app = tmp_path / "app.yaml"
    app.write_text(f"name: stin-{uuid.uuid4().hex[:8]}\nmodules:\n  inc:\n    command: [/bin/sh, {script}]\n"
                   "    environments: {SEMAPHORE_AUTO_CREATE: 'yes'}\n")
    cluster = Cluster(app, kafka, pg, tmp_path / "logs")
    cluster.start_projector()
    for _ in range(2):
        cluster.start_agent("inc", 4)
    cluster.wait_for_members("inc", 2)
    return cluster


def _run(cluster: Cluster, kafka: str, pg: str, topics: StateTopics, during=None) -> None:
    """TASKS tasks, each adding its body (1, 2 or 3) CALLS_PER_TASK times; checks the sum and the answers."""
    bodies = [str(1 + i % 3) for i in range(TASKS)]
    roots = cluster.send("inc", bodies)
    if during is not None:
        during()
    state = cluster.wait(roots, timeout_s=240)
    assert state.failed == 0 and state.succeeded == TASKS, state.modules
    tasks = list_tasks(kafka, pg, cluster.spec.name, "inc")
    values = [int(v) for t in tasks for v in t["custom_out"].split()]
    assert len(values) == TASKS * CALLS_PER_TASK, "every call printed its new value"
    assert len(set(values)) == len(values), "no two calls were answered with the same new value"
    total = sum(int(b) * CALLS_PER_TASK for b in bodies)
    assert max(values) == total
    with StateClient(kafka, topics) as client:
        assert client.call(client.command("get", SEMAPHORE, cluster.spec.name, "hits")).value == total
    item = settled_item(kafka, topics, (SEMAPHORE, cluster.spec.name, "hits"), TASKS * CALLS_PER_TASK)
    assert item is not None and (item.value, item.version) == (total, TASKS * CALLS_PER_TASK), \
        "each call changed it exactly once"


def test_increments_from_tasks_are_exact(kafka_bootstrap, pg_dsn, topics, tmp_path) -> None:
    owner = OwnerProcess(kafka_bootstrap, topics, "o1", tmp_path).start()
    cluster = _cluster(tmp_path, kafka_bootstrap, pg_dsn)
    try:
        _run(cluster, kafka_bootstrap, pg_dsn, topics)
    finally:
        cluster.close()
        owner.stop()


def test_increments_from_tasks_survive_the_owner_killed_twice(kafka_bootstrap, pg_dsn, topics, tmp_path) -> None:
    owner = OwnerProcess(kafka_bootstrap, topics, "o1", tmp_path).start()
    cluster = _cluster(tmp_path, kafka_bootstrap, pg_dsn)
    calls = TASKS * CALLS_PER_TASK

    def answered() -> int:
        with StateClient(kafka_bootstrap, topics) as client:
            reply = client.call(client.command("get", SEMAPHORE, cluster.spec.name, "hits"))
        return 0 if reply.code else int(reply.value)

    def kill_twice() -> None:
        total = sum((1 + i % 3) * CALLS_PER_TASK for i in range(TASKS))
        for fraction in (3, 3 / 2):
            deadline = time.monotonic() + 120
            while answered() < total / fraction and time.monotonic() < deadline:
                time.sleep(0.05)
            owner.kill()
            owner.start()

    try:
        _run(cluster, kafka_bootstrap, pg_dsn, topics, during=kill_twice)
        replies = replies_by_id(kafka_bootstrap, topics)
        ours = {rid: answers for rid, answers in replies.items()
                if any(a.get("value") is not None and a["code"] == 0 for a in answers)}
        assert len(ours) >= calls, "every increment-n answered (under one request id each)"
        for rid, answers in ours.items():
            assert len({(a["code"], a["value"]) for a in answers}) == 1, f"{rid} answered differently: {answers}"
    finally:
        cluster.close()
        owner.stop()
