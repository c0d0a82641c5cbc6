"""Scalebox's shared-state commands added for scripts brought from Scalebox, on the real broker: batch
`semaphore create` (a JSON map, `--sema-file`), on the CLI and from inside a task (the in-task tool reads the
file and forwards its contents).

Each test runs its own owner process on state topics of its own (`sbx.test.state.*`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cluster import Cluster
from pipeline import list_tasks, scalebox
from state_support import OwnerProcess, private_topics

from scalebox_stream.state.model import StateTopics


@pytest.fixture
def topics(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> StateTopics:
    topics = private_topics(kafka_bootstrap)
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", topics.prefix)  # the CLI and the agents inherit it
    return topics


@pytest.fixture
def owner(kafka_bootstrap: str, topics: StateTopics, tmp_path: Path):
    process = OwnerProcess(kafka_bootstrap, topics, "o1", tmp_path).start()
    yield process
    process.stop()


def _sbx(kafka: str, *args: str, stdin: str | None = None):
    return scalebox(list(args), kafka, "unused", stdin=stdin)


def test_batch_create_on_the_cli(kafka_bootstrap: str, owner: OwnerProcess, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    app = f"t{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("APP_ID", app)
    created = _sbx(kafka_bootstrap, "semaphore", "create", '{"semaphores":{"j1":10,"j2":20}}')
    assert (created.code, created.stdout) == (0, ""), created.stderr
    sema = tmp_path / "my-sema.txt"
    sema.write_text("".join(f'"node_progress:m:h{i}":{i}\n' + ("\n" if i % 10 == 0 else "") for i in range(250)))
    created = _sbx(kafka_bootstrap, "semaphore", "create", "--sema-file", str(sema), "--batch-size", "64")
    assert created.code == 0, created.stderr
    listing = json.loads(_sbx(kafka_bootstrap, "semaphore", "list").stdout)
    assert listing == {"j1": 10, "j2": 20, **{f"node_progress:m:h{i}": i for i in range(250)}}

    bad = tmp_path / "bad.txt"
    bad.write_text('"k1":1\n"k2" 2\n')
    refused = _sbx(kafka_bootstrap, "semaphore", "create", "--sema-file", str(bad))
    assert refused.code == 1 and f"{bad}:2:" in refused.stderr
    assert _sbx(kafka_bootstrap, "semaphore", "get", "k1").code == 2, "nothing created from a malformed file"

    again = _sbx(kafka_bootstrap, "semaphore", "create", '{"semaphores":{"j2":0,"j3":3}}')
    assert again.code == 1 and "1 of 2 semaphore(s) not created: j2 (" in again.stderr
    assert _sbx(kafka_bootstrap, "semaphore", "get", "j3").stdout == "3\n"
    monkeypatch.setenv("CONFLICT_ACTION", "OVERWRITE")
    assert _sbx(kafka_bootstrap, "semaphore", "create", '{"semaphores":{"j2":0}}').code == 0
    assert _sbx(kafka_bootstrap, "semaphore", "get", "j2").stdout == "0\n"
    assert _sbx(kafka_bootstrap, "semaphore", "create", "j4").code != 0, "a NAME without VALUE is a usage error"


def test_add_value_on_the_cli(kafka_bootstrap: str, owner: OwnerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ID", f"t{uuid.uuid4().hex[:6]}")
    assert _sbx(kafka_bootstrap, "semaphore", "add-value", "s", "5").code == 2
    added = _sbx(kafka_bootstrap, "semaphore", "add-value", "s", "5", "--auto-create")
    assert (added.code, added.stdout) == (0, "5\n"), added.stderr
    assert _sbx(kafka_bootstrap, "semaphore", "add-value", "s", "-2").stdout == "3\n"
    refused = _sbx(kafka_bootstrap, "semaphore", "add-value", "s", "-4")
    assert refused.code == 1 and "below zero" in refused.stderr
    assert _sbx(kafka_bootstrap, "semaphore", "add-value", "s", "-4", "--allow-negative").stdout == "-1\n"
    _sbx(kafka_bootstrap, "semaphore", "create", '{"semaphores":{"g:a":1,"g:b":2}}')
    assert _sbx(kafka_bootstrap, "semaphore", "add-value", "g:.*", "10").stdout == '{"g:a":11,"g:b":12}\n'


IN_TASK = r"""set -u
printf '"f1":1\n\n"f2":2\n' > "$WORK_DIR/my sema.txt"
scalebox semaphore create --sema-file "$WORK_DIR/my sema.txt" || exit 3
scalebox semaphore create '{"semaphores":{"j1":10,"j2":20}}' || exit 4
printf '"b1":1\n"b2" 2\n' > "$WORK_DIR/bad.txt"
scalebox semaphore create --sema-file "$WORK_DIR/bad.txt" 2> "$WORK_DIR/err" && exit 5
grep -q 'bad.txt:2:' "$WORK_DIR/err" || exit 6
scalebox semaphore create '{"semaphores":{"j1":0}}' 2> "$WORK_DIR/err" && exit 7
grep -q 'j1 (' "$WORK_DIR/err" || exit 8
v=$(scalebox semaphore add-value f1 -1) && [ "$v" = 0 ] || exit 10
scalebox semaphore add-value f1 -1 2> /dev/null && exit 11
v=$(scalebox semaphore add-value 'j.*' 5) && [ "$v" = '{"j1":15,"j2":25}' ] || exit 12
scalebox semaphore list > "$WORK_DIR/custom-out.txt" || exit 99
"""


def test_batch_create_from_inside_a_task(kafka_bootstrap: str, pg_dsn: str, owner: OwnerProcess,
                                         tmp_path: Path) -> None:
    script = tmp_path / "compat.sh"
    script.write_text(IN_TASK)
    cluster = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "compat", "m",
                                 f"[/bin/sh, {script}]\n    executor: process")
    try:
        cluster.start_projector()
        cluster.start_agent("m", 1)
        state = cluster.wait(cluster.send("m", ["go"]), timeout_s=120)
        tasks = list_tasks(kafka_bootstrap, pg_dsn, cluster.spec.name, "m")
        assert state.succeeded == 1, tasks
        assert json.loads(tasks[0]["custom_out"]) == {"f1": 0, "f2": 2, "j1": 15, "j2": 25}
    finally:
        cluster.close()
