"""Scalebox's shared-state commands added for scripts brought from Scalebox, on the real broker: batch
`semaphore create` (a JSON map, `--sema-file`), `semaphore add-value`, `delete` (a tombstone on the changelog, the
row gone from the projection, the same rows after a replay, an owner restored after it), on the CLI and from
inside a task (the in-task tool reads a sema file and forwards its contents).

Each test runs its own owner process on state topics of its own (`sbx.test.state.*`)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from cluster import Cluster
from pipeline import list_tasks, scalebox
from replay_support import app_events, copy_to_topic, replayed_digests
from state_support import OwnerProcess, changelog_state, private_topics, read_all
from support import verify

from scalebox_stream.projector.service import Projector, ProjectorSettings
from scalebox_stream.state.model import GLOBAL, SEMAPHORE, VARIABLE, StateTopics, decode_key


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


def test_delete_on_the_cli_on_the_changelog_after_a_restart_and_in_a_replayed_projection(
        kafka_bootstrap: str, pg_dsn: str, topics: StateTopics, owner: OwnerProcess,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, glob, since_ms = f"t{uuid.uuid4().hex[:6]}", f"g{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 1000
    monkeypatch.setenv("APP_ID", app)
    sbx = lambda *args: _sbx(kafka_bootstrap, *args)  # noqa: E731
    assert sbx("semaphore", "create", '{"semaphores":{"s":5,"t":1}}').code == 0
    assert sbx("semaphore", "add-value", "s", "1").stdout == "6\n"
    assert sbx("variable", "set", "v", "x").code == 0
    assert sbx("global", "set", glob, "y").code == 0
    for kind, name in (("semaphore", "s"), ("semaphore", "t"), ("variable", "v"), ("global", glob)):
        deleted = sbx(kind, "delete", name)
        assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr
        assert sbx(kind, "get", name).code == 2
        again = sbx(kind, "delete", name)
        assert again.code == 2 and "not found" in again.stderr
    assert sbx("semaphore", "create", "s", "9").code == 0, "a deleted semaphore can be created again"

    def settled() -> bool:
        state = changelog_state(kafka_bootstrap, topics)
        return (SEMAPHORE, app, "s") in state and (SEMAPHORE, app, "t") not in state
    deadline = time.monotonic() + 60
    while not settled():
        assert time.monotonic() < deadline, "the changelog never showed the delete and the re-create"
        time.sleep(0.2)
    tombstones = {decode_key(m.key()) for m in read_all(kafka_bootstrap, topics.changelog, topics.partitions)
                  if m.value() is None}
    assert {(SEMAPHORE, app, "s"), (SEMAPHORE, app, "t"), (VARIABLE, app, "v"), (GLOBAL, "", glob)} <= tombstones

    assert owner.stop() == 0
    owner.start()  # restores its partitions from the changelog, tombstones included
    assert sbx("semaphore", "list").stdout == '{"s":9}\n'
    assert sbx("semaphore", "get", "t").code == 2 and sbx("variable", "get", "v").code == 2
    assert sbx("global", "get", glob).code == 2

    records = [r for r in app_events(kafka_bootstrap, app, since_ms) if r[2].event_type == "StateChanged"]
    globals_ = [r for r in app_events(kafka_bootstrap, "", since_ms)
                if r[2].event_type == "StateChanged" and r[2].payload.name == glob]
    topic = f"sbx.test.state-replay.{app}"
    copy_to_topic(kafka_bootstrap, records + globals_, topic)
    db = f"state_replay_{app}"
    dsn = verify.create_database(pg_dsn, db)
    try:
        Projector(kafka_bootstrap, dsn, ProjectorSettings(batch_size=2), group=f"sbx.test.{app}.a",
                  topic=topic).run(until_caught_up=True, install_signals=False)
        with psycopg.connect(dsn) as conn:
            before = verify.table_digests(conn)
            values = conn.execute("SELECT kind, app, name, value, version FROM state_values ORDER BY 1, 3").fetchall()
            history = conn.execute("SELECT kind, name, version, op, value, old_value FROM state_history "
                                   "ORDER BY kind, name, changed_at, version").fetchall()
        after = replayed_digests(kafka_bootstrap, dsn, topic, f"sbx.test.{app}.b")
    finally:
        verify.drop_database(pg_dsn, db)
    assert values == [("semaphore", app, "s", "9", 1)], "deleted rows are gone; the re-created one is there"
    assert history == [
        ("global", glob, 1, "set", "y", None), ("global", glob, 2, "delete", "", "y"),
        ("semaphore", "s", 1, "create", "5", None), ("semaphore", "s", 2, "add", "6", "5"),
        ("semaphore", "s", 3, "delete", "", "6"), ("semaphore", "s", 1, "create", "9", None),
        ("semaphore", "t", 1, "create", "1", None), ("semaphore", "t", 2, "delete", "", "1"),
        ("variable", "v", 1, "set", "x", None), ("variable", "v", 2, "delete", "", "x")]
    assert after == before, {t: (before[t], after[t]) for t in before if before[t] != after[t]}


def test_lists_with_a_prefix_and_leaves_only_on_the_cli(kafka_bootstrap: str, owner: OwnerProcess,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app, glob = f"t{uuid.uuid4().hex[:6]}", f"g{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("APP_ID", app)
    sbx = lambda *args: _sbx(kafka_bootstrap, *args)  # noqa: E731
    assert sbx("semaphore", "create", '{"semaphores":{"vtask_size:m":2,"vtask_size:m:h1":1,"other":3}}').code == 0
    assert sbx("semaphore", "list", "--prefix", "vtask_size").stdout == '{"vtask_size:m":2,"vtask_size:m:h1":1}\n'
    assert sbx("semaphore", "list", "--leaf-only").stdout == '{"other":3,"vtask_size:m:h1":1}\n'
    assert sbx("semaphore", "list", "--prefix", "vtask_size:", "--leaf-only").stdout == '{"vtask_size:m:h1":1}\n'
    for name, value in (("pos", "1"), ("pos:a", "2"), ("q", "3")):
        sbx("variable", "set", name, value)
    assert sbx("variable", "list").stdout == '{"pos":"1","pos:a":"2","q":"3"}\n'
    assert sbx("variable", "list", "--prefix", "pos", "--leaf-only").stdout == '{"pos:a":"2"}\n'
    sbx("global", "set", f"{glob}:x", "1")
    sbx("global", "set", f"{glob}:x:y", "2")
    listed = sbx("global", "list", "--prefix", glob, "--leaf-only")
    assert (listed.code, listed.stdout) == (0, f'{{"{glob}:x:y":"2"}}\n'), listed.stderr
    assert sbx("global", "list", "--prefix", f"{glob}:").stdout == f'{{"{glob}:x":"1","{glob}:x:y":"2"}}\n'


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
scalebox semaphore create gone 1 && scalebox semaphore delete gone || exit 13
scalebox semaphore delete gone 2> /dev/null; [ $? -eq 2 ] || exit 14
scalebox variable set v 1 && scalebox variable delete v && ! scalebox variable get v 2> /dev/null || exit 15
v=$(scalebox variable list --prefix v) && [ "$v" = '{}' ] || exit 16
scalebox variable set w:1 a && scalebox variable set w:1:x b || exit 17
v=$(scalebox variable list --prefix w --leaf-only) && [ "$v" = '{"w:1:x":"b"}' ] || exit 18
v=$(scalebox semaphore list --prefix f) && [ "$v" = '{"f1":0,"f2":2}' ] || exit 19
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
