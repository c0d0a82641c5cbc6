"""Agents that stop by themselves, as children of this machine: after their module's idle limit (the server
of `app create` and `scalebox run` carry on without them) and when their app is finished."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from pipeline import list_tasks, scalebox, until

from scalebox_stream.launch.state_service import stop_state_service
from scalebox_stream.local.home import pid_alive

TASK = '#!/bin/sh\nprintf "%s" "$1" > "$WORK_DIR/custom-out.txt"\n'


def _app(root: Path, name: str, modules: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.sh").write_text(TASK)
    (root / "task.sh").chmod(0o755)
    app = {"name": name, "modules": {m: {"command": "./task.sh", **keys} for m, keys in modules.items()}}
    (root / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    return root / "app.yaml"


def test_served_agents_stop_when_idle_and_when_the_app_finishes(tmp_path, kafka_bootstrap, pg_dsn):
    home, name = tmp_path / "home", f"lifespan-{uuid.uuid4().hex[:6]}"
    app_file = _app(tmp_path / "app", name, {"idle": {"max_idle_polls": 2, "poll_interval_seconds": 1},
                                             "busy": {}})
    logs = home / "logs" / name
    try:
        created = scalebox(["app", "create", str(app_file)], kafka_bootstrap, pg_dsn, home=home)
        assert created.code == 0, created.stderr
        server = int((home / "apps" / name / "serve.pid").read_text())
        until("the idle agent to stop", lambda: "stopping by itself: idle for 2s" in
               (logs / "agent-idle.log").read_text(), 30)
        added = scalebox(["task", "add", "--app-id", name, "--sink-module", "busy", "x"], kafka_bootstrap, pg_dsn,
                         home=home)
        assert added.code == 0, added.stderr
        until("busy's task to succeed", lambda: [t for t in list_tasks(kafka_bootstrap, pg_dsn, name)
                                                  if t["status"] == "succeeded"], 60)
        assert pid_alive(server), "an agent that stopped by itself is no failure of the server"
        finished = scalebox(["app", "set-finished", "--app-id", name, "ok"], kafka_bootstrap, pg_dsn, home=home)
        assert finished.code == 0, finished.stderr
        until("busy's agent to stop", lambda: "stopping by itself: app finished: ok" in
               (logs / "agent-busy.log").read_text(), 30)
        until("the server to stop", lambda: not pid_alive(server), 30)
        assert "finished: ok" in (logs / "serve.log").read_text()
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)
        stop_state_service(home, kafka_bootstrap)


def test_a_run_carries_on_when_an_idle_agent_stops(tmp_path, kafka_bootstrap, pg_dsn):
    name = f"lifespan-run-{uuid.uuid4().hex[:6]}"
    app_file = _app(tmp_path / "app", name, {"first": {},
                                             "spare": {"max_idle_polls": 1, "poll_interval_seconds": 1}})
    slow = tmp_path / "app" / "slow.sh"
    slow.write_text('#!/bin/sh\nsleep 4\nprintf "%s" "$1" > "$WORK_DIR/custom-out.txt"\n')
    slow.chmod(0o755)
    app = yaml.safe_load(app_file.read_text())
    app["modules"]["first"]["command"] = "./slow.sh"
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    result = scalebox(["run", str(app_file), "--module", "first", "a"], kafka_bootstrap, pg_dsn,
                      home=tmp_path / "home", timeout=120)
    assert result.code == 0, result.stderr
    assert "stopping by itself: idle for 1s" in (tmp_path / "home" / "logs" / name / "agent-spare.log").read_text()
    assert [t["custom_out"] for t in list_tasks(kafka_bootstrap, pg_dsn, name)] == ["a"]
