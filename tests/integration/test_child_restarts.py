"""`scalebox run` restarts a child that dies under it (an agent SIGKILLed, as the OOM killer does) and the run
goes on to finish every task once; a child that keeps dying ends the run with an error naming it; the server of
`app create` restarts one too. Real Kafka and PostgreSQL, process executor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import yaml
from pipeline import REPO, list_tasks, scalebox, until

from scalebox_stream.kafka.security import forwarded_env
from scalebox_stream.launch.state_service import stop_state_service
from scalebox_stream.local.home import pid_alive

TASKS = [f"t{i:02d}" for i in range(12)]


def _app(root: Path, name: str, sleep_s: float) -> Path:
    """A one-module app (`work`, 2 slots) whose task marks its start in `root/started`, sleeps, then writes its
    body as its output."""
    root.mkdir(parents=True, exist_ok=True)
    started = root / "started"
    (root / "task.sh").write_text(f'#!/bin/sh\necho "$1" >> {started}\nsleep {sleep_s}\n'
                                  'printf "%s" "$1" > "$WORK_DIR/custom-out.txt"\n')
    (root / "task.sh").chmod(0o755)
    app = {"name": name, "modules": {"work": {"command": "./task.sh", "slots": 2}}}
    (root / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    return root / "app.yaml"


@contextlib.contextmanager
def _running(app_file: Path, bodies: list[str], kafka: str, pg: str, home: Path,
             **env: str) -> Iterator[subprocess.Popen]:
    """`scalebox run APP --module work BODIES` in the background (the test kills its agent meanwhile); killed on
    the way out if still running."""
    environ = {**os.environ, **forwarded_env(kafka), "SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg,
               "SCALEBOX_HOME": str(home), **env}
    run = subprocess.Popen([sys.executable, "-m", "scalebox_stream.cli.main", "run", str(app_file), "--module",
                            "work", *bodies], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=environ, cwd=REPO)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _agent_pid(logs: Path) -> int | None:
    """The pid of the run's `work` agent as its record says (a restart writes the new one)."""
    try:
        (agent,) = json.loads((logs / "agents.json").read_text())["agents"]
        return int(agent["ref"])
    except (OSError, ValueError, KeyError):
        return None


def _await_started(marks: Path, count: int, timeout_s: float = 45.0) -> None:
    """Until `count` task attempts have started (polled closely: the kill must come while they run)."""
    deadline = time.monotonic() + timeout_s
    while not (marks.exists() and len(marks.read_text().split()) >= count):
        assert time.monotonic() < deadline, f"timed out waiting for {count} task(s) to start"
        time.sleep(0.02)


def test_a_sigkilled_agent_is_restarted_and_the_run_finishes_every_task_once(tmp_path, kafka_bootstrap, pg_dsn):
    name, home = f"restart-{uuid.uuid4().hex[:6]}", tmp_path / "home"
    app_file = _app(tmp_path / "app", name, 0.3)
    logs = home / "logs" / name
    with _running(app_file, TASKS, kafka_bootstrap, pg_dsn, home) as run:
        _await_started(tmp_path / "app" / "started", 1)
        pid = until("the agent's record", lambda: _agent_pid(logs), 10)
        os.kill(pid, signal.SIGKILL)
        out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    assert "agent-work exited with code -9 (signal SIGKILL); restarting it in 1 s (restart 1 of 5 in 10 min)" in err
    log = (logs / "agent-work.log").read_text()
    assert "SUPERVISOR: restarted agent-work (pid " in log
    assert _agent_pid(logs) != pid, "the record names the restarted agent"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT t.body, t.status, t.custom_out, count(*) FILTER (WHERE r.status = 'succeeded') "
            "FROM tasks t LEFT JOIN task_runs r USING (task_id) WHERE t.app = %s GROUP BY t.task_id ORDER BY t.body",
            (name,)).fetchall()
    assert rows == \
        [(body, "succeeded", body, 1) for body in TASKS], "every task's work done, one succeeded attempt each"
    started = (tmp_path / "app" / "started").read_text().split()
    assert sorted(set(started)) == TASKS and len(started) > len(TASKS), \
        "the kill hit attempts in flight, which ran again"


def test_a_child_that_keeps_dying_ends_the_run_with_an_error_naming_it(tmp_path, kafka_bootstrap, pg_dsn):
    name, home = f"restart-fails-{uuid.uuid4().hex[:6]}", tmp_path / "home"
    app_file = _app(tmp_path / "app", name, 8)
    logs = home / "logs" / name
    with _running(app_file, ["long"], kafka_bootstrap, pg_dsn, home, SCALEBOX_CHILD_RESTARTS="1") as run:
        _await_started(tmp_path / "app" / "started", 1)
        first = until("the agent's record", lambda: _agent_pid(logs), 10)
        os.kill(first, signal.SIGKILL)
        second = until("the restarted agent", lambda: (pid := _agent_pid(logs)) != first and pid and pid_alive(pid)
                       and pid, 20)
        os.kill(second, signal.SIGKILL)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err
    assert "restarting it in 1 s (restart 1 of 1 in 10 min)" in err
    assert ("error: agent-work exited with code -9 (signal SIGKILL), not restarted (restarted 1 time(s) in 10 min "
            "already, the limit)") in err
    assert "not restarted: restarted 1 time(s)" in (logs / "agent-work.log").read_text()


def test_the_app_server_restarts_a_sigkilled_agent_and_serves_on(tmp_path, kafka_bootstrap, pg_dsn):
    name, home = f"restart-served-{uuid.uuid4().hex[:6]}", tmp_path / "home"
    app_file = _app(tmp_path / "app", name, 0.1)
    logs = home / "logs" / name
    try:
        created = scalebox(["app", "create", str(app_file)], kafka_bootstrap, pg_dsn, home=home)
        assert created.code == 0, created.stderr
        first = until("the agent's record", lambda: _agent_pid(logs), 10)
        os.kill(first, signal.SIGKILL)
        until("the restarted agent", lambda: (pid := _agent_pid(logs)) != first and pid and pid_alive(pid), 20)
        assert ("agent-work exited with code -9 (signal SIGKILL); restarting it in 1 s (restart 1 of 5 in 10 min)"
                in (logs / "serve.log").read_text())
        added = scalebox(["task", "add", "--app-id", name, "--sink-module", "work", "after"], kafka_bootstrap,
                         pg_dsn, home=home)
        assert added.code == 0, added.stderr
        until("the task added after the restart to succeed",
              lambda: [t for t in list_tasks(kafka_bootstrap, pg_dsn, name) if t["status"] == "succeeded"], 45)
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)
        stop_state_service(home, kafka_bootstrap)
