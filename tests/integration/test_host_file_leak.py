"""A program cannot make the agent read a host file or block it through what it leaves in its work directory.

The host file holds a random marker; after the run, every record written to Kafka since the test began
(committed or not, on any topic) and every row of the projection is searched for it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from cluster import Cluster
from docker_fixtures import *  # noqa: F403
from leak_search import assert_no_leak

GRACE_S = 5


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    """A host file outside every mount, holding a random marker."""
    marker = f"SECRET-{uuid.uuid4().hex}".encode()
    path = tmp_path / "host-only" / "shadow"
    path.parent.mkdir()
    path.write_bytes(marker + b"\n")
    return path, marker


def _cluster(tmp_path: Path, kafka: str, pg: str, module: str) -> Cluster:
    app = tmp_path / "app.yaml"
    app.write_text(f"name: leak-{uuid.uuid4().hex[:8]}\nmodules:\n  m:\n{module}")
    return Cluster(app, kafka, pg, tmp_path / "logs")


def _run_one(cluster: Cluster, body: str = "go") -> dict:
    """Run one task to its end with one agent (stopped by SIGTERM within its grace period) and a projector;
    the task's single attempt as projected."""
    agent = cluster.start_agent("m", 1, "--grace", str(GRACE_S))
    cluster.start_projector()
    (task_id,) = cluster.send("m", [body])
    state = cluster.wait([task_id], timeout_s=120)
    assert state.finished
    began = time.monotonic()
    assert cluster.terminate(agent, timeout_s=GRACE_S + 20) == 0
    assert time.monotonic() - began < GRACE_S + 10
    (run,) = cluster.query("SELECT status, error, custom_out, input_bytes FROM task_runs WHERE task_id = %s",
                           task_id)
    (status,) = cluster.query("SELECT status FROM tasks WHERE task_id = %s", task_id)[0]
    return {"task": status, "status": run[0], "error": run[1], "custom_out": run[2], "input_bytes": run[3]}


@pytest.mark.usefixtures("busybox_image")
@pytest.mark.parametrize("mode", ["task", "slot"])
def test_a_container_link_to_a_host_file_is_an_error_and_leaks_nothing(tmp_path, kafka_bootstrap, pg_dsn, secret,
                                                                          mode):
    path, marker = secret
    since_ms = int(time.time() * 1000) - 1000
    command = f"ln -s {path} /work/custom-out.txt; printf '%s\\n' {path} /etc/shadow > /work/input-files.txt"
    cluster = _cluster(tmp_path, kafka_bootstrap, pg_dsn,
                       f"    image: scalebox/base:busybox\n    container_mode: {mode}\n"
                       f"    command: [/bin/sh, -c, \"{command}\"]\n")
    try:
        run = _run_one(cluster)
    finally:
        cluster.close()
    assert (run["task"], run["status"]) == ("failed", "error")
    assert run["error"] == "custom-out.txt is a symbolic link: not read"
    assert run["custom_out"] == "" and run["input_bytes"] == 0  # the host file's size is not revealed either
    assert_no_leak(kafka_bootstrap, pg_dsn, marker, since_ms)


def test_a_process_link_to_a_host_file_is_an_error_and_leaks_nothing(tmp_path, kafka_bootstrap, pg_dsn, secret):
    path, marker = secret
    since_ms = int(time.time() * 1000) - 1000
    cluster = _cluster(tmp_path, kafka_bootstrap, pg_dsn,
                       f"    command: [/bin/sh, -c, 'ln -s {path} \"$WORK_DIR/custom-out.txt\"']\n")
    try:
        run = _run_one(cluster)
    finally:
        cluster.close()
    assert (run["task"], run["status"]) == ("failed", "error")
    assert run["error"] == "custom-out.txt is a symbolic link: not read"
    assert_no_leak(kafka_bootstrap, pg_dsn, marker, since_ms)


@pytest.mark.parametrize("executor", ["process", "docker"])
def test_a_fifo_left_in_the_work_dir_blocks_nothing(tmp_path, kafka_bootstrap, pg_dsn, executor, request):
    if executor == "docker":
        request.getfixturevalue("busybox_image")
        module = ("    image: scalebox/base:busybox\n"
                  "    command: [/bin/sh, -c, 'mkfifo /work/custom-out.txt /work/sink-tasks.txt']\n")
    else:
        module = "    command: [/bin/sh, -c, 'cd \"$WORK_DIR\" && mkfifo custom-out.txt sink-tasks.txt']\n"
    cluster = _cluster(tmp_path, kafka_bootstrap, pg_dsn, module)
    try:
        run = _run_one(cluster)  # the task ends, and the agent stops within its grace period
    finally:
        cluster.close()
    assert (run["task"], run["status"], run["error"]) == ("failed", "error", "custom-out.txt is a FIFO: not read")
