"""The wait-queue pattern (Scalebox's modules/wait-queue): a module with `wait_semaphore` admits a task only while
the semaphore is positive, taking one from it; a refused task waits for the semaphore's next change (no polling).
Semaphore 2, five tasks: two run; one `increment` releases one more."""

from __future__ import annotations

import time
import uuid

import pytest
from cluster import Cluster
from state_support import OwnerProcess, private_topics

from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE


def _running(cluster: Cluster, roots: list[str]) -> tuple[int, int]:
    modules = cluster.state(roots).modules
    return (sum(m["running"] for m in modules), sum(m["succeeded"] for m in modules))


def _settle(cluster: Cluster, roots: list[str], want: tuple[int, int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _running(cluster, roots) != want:
        assert time.monotonic() < deadline, f"(running, succeeded) {_running(cluster, roots)}, not {want}"
        time.sleep(0.1)


def test_semaphore_two_admits_two_of_five_and_an_increment_one_more(kafka_bootstrap, pg_dsn, tmp_path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    topics = private_topics(kafka_bootstrap)
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", topics.prefix)
    owner = OwnerProcess(kafka_bootstrap, topics, "o1", tmp_path).start()
    release = tmp_path / "release"
    app = tmp_path / "app.yaml"
    name = f"wq-{uuid.uuid4().hex[:8]}"
    app.write_text(f"name: {name}\nmodules:\n  wq:\n    command: [/bin/sh, -c, 'while [ ! -e {release} ]; do "
                   "sleep 0.05; done']\n    slots: 5\n    wait_semaphore: my_sema\n")
    client = StateClient(kafka_bootstrap, topics)
    cluster = Cluster(app, kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        assert client.call(client.command("create", SEMAPHORE, name, "my_sema", value=2)).code == OK
        cluster.start_projector()
        cluster.start_agent("wq", 5)
        roots = cluster.send("wq", [f"t{i}" for i in range(5)])
        _settle(cluster, roots, (2, 0))
        time.sleep(2)
        assert _running(cluster, roots) == (2, 0), "no third task while the semaphore is 0"
        assert client.call(client.command("get", SEMAPHORE, name, "my_sema")).value == 0
        assert client.call(client.command("add", SEMAPHORE, name, "my_sema", n=1)).value == 1
        _settle(cluster, roots, (3, 0))
        time.sleep(1)
        assert _running(cluster, roots) == (3, 0), "one increment, one more task"
        release.touch()
        _settle(cluster, roots, (0, 3))
        client.call(client.command("add", SEMAPHORE, name, "my_sema", n=2))
        _settle(cluster, roots, (0, 5))
        assert client.call(client.command("get", SEMAPHORE, name, "my_sema")).value == 0
    finally:
        client.close()
        cluster.close()
        owner.stop()
