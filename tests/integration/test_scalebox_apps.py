"""Scalebox's own commands, typed as its READMEs and scripts type them, on real Kafka and PostgreSQL:
`echo BODY | scalebox run` from a directory holding `./code` (hello-scalebox), the app id cut out of its output
and used as `APP_ID`, `app create` + `task add --sink-module` + `app set-finished` + `app list`, `to_host`, and a
repeated body. The module runs with the process executor (`--executor process`): no image is needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pipeline import list_tasks, scalebox

from scalebox_stream.launch.state_service import stop_state_service
from scalebox_stream.local.home import scalebox_home

HELLO_RUN = """#!/bin/bash
echo "Body:$1"
scalebox app set-finished --module-id=${MODULE_ID} "Hello $1, it is OK!"
"""
"""hello-scalebox's code/run.sh, as Scalebox writes it (the in-task `scalebox` answers)."""

ECHO_RUN = """#!/bin/sh
printf '%s@%s' "$1" "$HOST_NAME" > "$WORK_DIR/custom-out.txt"
"""


@pytest.fixture(scope="module", autouse=True)
def _standing_owner_stopped(kafka_bootstrap):
    """`app create` starts a detached state owner that outlives the command by design; the tests stop the one
    they started, so that none is left serving a broker that later goes away."""
    yield
    stop_state_service(scalebox_home(), kafka_bootstrap)


def _code_dir(root: Path, script: str, name: str = "code") -> Path:
    (root / name).mkdir(parents=True)
    run = root / name / "run.sh"
    run.write_text(script)
    run.chmod(0o755)
    return root


def _env(kafka: str, pg: str, **extra: str) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return {**os.environ, "SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg, "PATH": path, **extra}


def _sh(script: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """A bash script, as a Scalebox user types it, with the `scalebox` of this checkout on PATH."""
    return subprocess.run(["bash", "-ec", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _apps(kafka: str, pg: str) -> dict[str, dict]:
    listed = scalebox(["app", "list", "--json"], kafka, pg)
    assert listed.code == 0, listed.stderr
    return {row["app"]: row for row in json.loads(listed.stdout)}


def _until(what: str, check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("executor", ["process", "docker"])
def test_hello_scalebox_prints_its_result_text(tmp_path, kafka_bootstrap, pg_dsn, executor, request):
    """`echo "Docker-based_Scalebox" | scalebox run` in hello-scalebox's directory: the app id on stdout, the
    task's `app set-finished` text on screen when the run ends, the app FINISHED with it in `app list`. With
    docker, the code runs in the agent image (`hub.cstcloud.cn/scalebox/agent`, built locally), as in
    Scalebox's README; with the process executor, on this machine."""
    if executor == "docker":
        request.getfixturevalue("example_images")  # Docker is there (or the test is skipped, or fails in CI)
    app = f"hello-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "hello-scalebox", HELLO_RUN)
    option = "--executor process" if executor == "process" else ""
    done = _sh(f"echo Docker-based_Scalebox | scalebox run {option}", root,
               _env(kafka_bootstrap, pg_dsn, _APP_NAME=app))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f'{{"app_id":{app}}}\n'
    assert "result: Hello Docker-based_Scalebox, it is OK!" in done.stderr
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app)
    assert task["body"] == "Docker-based_Scalebox" and task["status"] == "succeeded"
    row = _apps(kafka_bootstrap, pg_dsn)[app]
    assert (row["state"], row["result"]) == ("FINISHED", "Hello Docker-based_Scalebox, it is OK!")


def test_app_id_cut_from_run_output_works_as_APP_ID(tmp_path, kafka_bootstrap, pg_dsn):
    """app-primes' idiom: the id cut out of `scalebox run`'s output names the app to the state commands; each
    stdin line `body,{headers}` is one task with those headers."""
    app = f"cut-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "work", ECHO_RUN)
    script = ("app_id=$(printf '1000\\n2000,{\"part\":\"b\"}\\n' | scalebox run --executor process "
              "| cut -d':' -f2 | tr -d '}')\n"
              "echo \"app=$app_id\"\n"
              "APP_ID=$app_id scalebox semaphore create sum_value 168\n"
              "APP_ID=$app_id scalebox semaphore get sum_value\n")
    done = _sh(script, root, _env(kafka_bootstrap, pg_dsn, _APP_NAME=app))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"app={app}", "168"]
    tasks = {t["body"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, app, "main")}
    assert set(tasks) == {"1000", "2000"}
    assert all(t["status"] == "succeeded" for t in tasks.values())
    shown = scalebox(["task", "show", tasks["2000"]["task_id"], "--json"], kafka_bootstrap, pg_dsn)
    assert json.loads(shown.stdout)["headers"]["part"] == "b"


def test_app_create_task_add_set_finished_and_list(tmp_path, kafka_bootstrap, pg_dsn):
    """An app created from ./code stays served after `app create` returns: tasks added later run; a repeated
    body is an error unless CONFLICT_ACTION says IGNORE or OVERWRITE; `app set-finished` ends it with its
    result, shown by `app list`; `--to-host` binds a HOST-BOUND task to a host."""
    app = f"served-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "work", ECHO_RUN)
    env = _env(kafka_bootstrap, pg_dsn, _APP_NAME=app)
    created = _sh("scalebox app create --executor process", root, env)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f'{{"app_id":{app}}}\n'
    try:
        added = _sh(f"APP_ID={app} scalebox task add --sink-module main first", root, env)
        assert added.returncode == 0, added.stderr
        _until("the added task to run", lambda: [t for t in list_tasks(kafka_bootstrap, pg_dsn, app)
                                                 if t["status"] == "succeeded"])
        assert _apps(kafka_bootstrap, pg_dsn)[app]["state"] == "RUNNING"

        again = _sh(f"scalebox task add --app-id {app} --sink-module main first", root, env)
        assert again.returncode == 1
        assert "module 'main' already has a task with body 'first'" in again.stderr
        ignored = _sh(f"CONFLICT_ACTION=IGNORE scalebox task add --app-id {app} first second", root, env)
        assert ignored.returncode == 0, ignored.stderr
        assert len(ignored.stdout.split()) == 1 and "skipped: main already has body 'first'" in ignored.stderr
        rerun = _sh(f"scalebox task add --app-id {app} --conflict-action OVERWRITE first", root, env)
        assert rerun.returncode == 0, rerun.stderr
        _until("three tasks to succeed", lambda: len([t for t in list_tasks(kafka_bootstrap, pg_dsn, app)
                                                      if t["status"] == "succeeded"]) == 3)
        assert sorted(t["body"] for t in list_tasks(kafka_bootstrap, pg_dsn, app)) == ["first", "first", "second"]

        # Scalebox's --module-id: the sending module here (a module's name names no app)
        sent = _sh(f"scalebox task add --app-id {app} --module-id main third", root, env)
        assert sent.returncode == 0, sent.stderr
        shown = scalebox(["task", "show", sent.stdout.strip(), "--json"], kafka_bootstrap, pg_dsn)
        assert json.loads(shown.stdout)["headers"]["from_module"] == "main"
        no_app = _sh("scalebox app set-finished --module-id main 'too early' || echo code=$?", root, env)
        assert "code=1" in no_app.stdout and "--module-id 'main' is a module's name here" in no_app.stderr
        broadcast = _sh(f"scalebox task add --app-id {app} -h host_broadcast=yes everywhere || echo code=$?", root,
                        env)
        assert "code=2" in broadcast.stdout and "'host_broadcast'" in broadcast.stderr, broadcast.stderr

        finished = _sh(f"APP_ID={app} scalebox app set-finished 'all 3 done'", root, env)
        assert finished.returncode == 0, finished.stderr
        row = _until("the app to be FINISHED", lambda: (r := _apps(kafka_bootstrap, pg_dsn)[app])["state"] ==
                     "FINISHED" and r)
        assert row["result"] == "all 3 done"
        pid_file = Path(os.environ.get("SCALEBOX_HOME", "~/.scalebox")).expanduser() / "apps" / app / "serve.pid"
        _until("the server to stop", lambda: not pid_file.exists())
    finally:
        _sh(f"scalebox app stop {app} || true", root, env)


HOST_BOUND_APP = """name: {app}
modules:
  placed:
    command: ./code/run.sh
    task_dist_mode: HOST-BOUND
"""


def test_to_host_on_cli_tasks(tmp_path, kafka_bootstrap, pg_dsn):
    """`task add --to-host H` to a HOST-BOUND module: the task waits for an agent of host H; this machine's
    agent runs the one bound to it and never the one bound elsewhere."""
    app = f"tohost-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "work", ECHO_RUN)
    (root / "app.yaml").write_text(HOST_BOUND_APP.format(app=app))
    env = _env(kafka_bootstrap, pg_dsn)
    created = _sh("scalebox app create", root, env)
    assert created.returncode == 0, created.stderr
    here = socket.gethostname()
    try:
        elsewhere = _sh(f"scalebox task add --app-id {app} --to-host elsewhere-{app} far", root, env)
        assert elsewhere.returncode == 0, elsewhere.stderr
        bound = _sh(f"scalebox task add --app-id {app} --to-host {here} near", root, env)
        assert bound.returncode == 0, bound.stderr
        (near,) = _until("the task bound here to run", lambda: [t for t in list_tasks(kafka_bootstrap, pg_dsn, app)
                                                                 if t["status"] == "succeeded"])
        assert near["custom_out"] == f"near@{here}"
        time.sleep(1.0)
        far = [t for t in list_tasks(kafka_bootstrap, pg_dsn, app) if t["body"] == "far"]
        assert [t["status"] for t in far] == ["created"]
    finally:
        deleted = _sh(f"scalebox app delete {app}", root, env)
    assert deleted.returncode == 0, deleted.stderr
    assert f"{app}: stopped" in deleted.stdout and f"topic sbx.tasks.{app}.placed.host." in deleted.stdout


def test_to_host_on_run_start_tasks(tmp_path, kafka_bootstrap, pg_dsn):
    """`scalebox run`'s start items with a `to_host` header, as `task add --to-host`: the one bound to this
    machine runs here, the one bound elsewhere waits for an agent of that host (so the run times out)."""
    app = f"runhost-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "work", ECHO_RUN)
    (root / "app.yaml").write_text(HOST_BOUND_APP.format(app=app))
    here = socket.gethostname()
    done = _sh(f"""printf 'near,{{"to_host":"{here}"}}\nfar,{{"to_host":"elsewhere-{app}"}}\n' \
                   | scalebox run app.yaml - --timeout 12""", root, _env(kafka_bootstrap, pg_dsn))
    assert done.returncode != 0, "the task bound elsewhere never runs"
    tasks = {t["body"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, app)}
    assert tasks["near"]["status"] == "succeeded" and tasks["near"]["custom_out"] == f"near@{here}"
    assert tasks["far"]["status"] == "created", done.stderr


GREEDY_APP = """name: {app}
modules:
  quick:
    command: /bin/true
    arguments:
      task_min_seconds: 60
    parameters:
      start_task: [a, b, c, d]
"""


def test_a_greedy_slot_suspends_its_module(tmp_path, kafka_bootstrap, pg_dsn):
    """`task_min_seconds`: one slot's attempts end sooner three times in a row, so the module is suspended on
    its agent (Scalebox's GREEDY slot exits): the fourth task waits, and the status says why."""
    app = f"greedy-{uuid.uuid4().hex[:6]}"
    (tmp_path / "app.yaml").write_text(GREEDY_APP.format(app=app))
    done = _sh("scalebox run app.yaml --timeout 12", tmp_path, _env(kafka_bootstrap, pg_dsn))
    assert done.returncode != 0, "the fourth task never runs"
    statuses = sorted(t["status"] for t in list_tasks(kafka_bootstrap, pg_dsn, app))
    assert statuses.count("succeeded") == 3 and len(statuses) == 4, statuses
    shown = scalebox(["status", "--app", app, "--json"], kafka_bootstrap, pg_dsn)
    (row,) = json.loads(shown.stdout)
    assert row["state"] == "suspended", row
    assert row["state_reason"].startswith("GREEDY: slot 0 ran 3 attempts in a row in less than task_min_seconds")


@pytest.mark.parametrize("action, expected", [("", 1), ("IGNORE", 0)])
def test_a_repeated_start_body(tmp_path, kafka_bootstrap, pg_dsn, action, expected):
    """`scalebox run` with one body twice on stdin: an error by default (nothing runs), one task with IGNORE."""
    app = f"twice-{uuid.uuid4().hex[:6]}"
    root = _code_dir(tmp_path / "work", ECHO_RUN)
    done = _sh("printf 'x\\nx\\n' | scalebox run --executor process", root,
               _env(kafka_bootstrap, pg_dsn, _APP_NAME=app, CONFLICT_ACTION=action))
    assert done.returncode == expected, done.stderr
    if expected:
        assert "module 'main' already has a task with body 'x'" in done.stderr
        assert _apps(kafka_bootstrap, pg_dsn).get(app) is None
    else:
        assert [t["body"] for t in list_tasks(kafka_bootstrap, pg_dsn, app)] == ["x"]

