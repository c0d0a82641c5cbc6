"""Placement through Slurm: `scalebox run` submits calc's agents for hosts h1 and h2 as Slurm jobs (a real
single-node Slurm on this machine, .ci/install-slurm.sh); squeue lists them during the run and none after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from pipeline import REPO, list_tasks, scalebox
from test_primes import EXPECTED


@pytest.fixture(scope="module")
def slurm() -> None:
    """A running single-node Slurm (started by .ci/install-slurm.sh when it is not)."""
    if os.geteuid() != 0 and os.environ.get("CI", "").lower() != "true":
        pytest.skip("starting Slurm's daemons needs root")
    proc = subprocess.run(["bash", str(REPO / ".ci" / "install-slurm.sh")], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f".ci/install-slurm.sh failed:\n{proc.stdout}\n{proc.stderr}")


def _jobs(prefix: str) -> set[str]:
    out = subprocess.run(["squeue", "--noheader", "--format", "%j %T"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)}


@pytest.mark.usefixtures("slurm")
def test_primes_calc_as_slurm_jobs_on_two_hosts(tmp_path: Path, kafka_bootstrap, pg_dsn):
    app_dir = tmp_path / "primes"
    shutil.copytree(REPO / "examples" / "primes", app_dir)
    # Slurm starts the two agent jobs seconds apart: each task lasts long enough (10 tasks x 1.5 s on 2 slots) that
    # the first host cannot finish them all before the second joins (0.5 s once let h1 take all ten).
    (app_dir / "slow-calc.sh").write_text('#!/bin/sh\nsleep 1.5\nexec "$(dirname "$0")/calc/run.sh" "$@"\n')
    (app_dir / "slow-calc.sh").chmod(0o755)
    app = yaml.safe_load((app_dir / "app-process.yaml").read_text())
    name = f"primes-slurm-{uuid.uuid4().hex[:6]}"
    app["name"] = name
    app["modules"]["calc"].pop("slots", None)
    app["modules"]["calc"].update({"command": "./slow-calc.sh", "slots": ["h1:2", "h2:2"]})
    app["clusters"] = {"local": {
        "parameters": {"agent_start": "slurm", "scalebox_command": str(Path(sys.prefix) / "bin" / "scalebox")},
        "hosts": {"h0": {"role": "head"}, "h1": {}, "h2": {}}}}
    (app_dir / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    prefix = f"sbx-{name}-"
    seen: set[str] = set()
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(
        result=scalebox(["run", str(app_dir / "app.yaml"), "1000"], kafka_bootstrap, pg_dsn, timeout=240)))
    runner.start()
    while runner.is_alive():
        seen |= _jobs(prefix)
        time.sleep(0.2)
    runner.join()
    result = outcome["result"]
    assert result.code == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert seen == {f"{prefix}calc-h1", f"{prefix}calc-h2"}, "squeue listed the agent jobs during the run"
    assert _jobs(prefix) == set(), "agent jobs left in the queue after the run"
    calc = list_tasks(kafka_bootstrap, pg_dsn, name, "calc")
    assert {t["body"]: int(t["custom_out"]) for t in calc} == EXPECTED
    assert all(t["status"] == "succeeded" for t in calc)
    assert {t["host"] for t in calc} == {"h1", "h2"}
    logs = scalebox(["logs", name, "--host", "h1"], kafka_bootstrap, pg_dsn)
    assert logs.code == 0 and "calc@h1 | " in logs.stdout, logs


@pytest.mark.usefixtures("slurm")
def test_app_create_slurm_jobs_end_when_the_app_finishes(tmp_path: Path, kafka_bootstrap, pg_dsn):
    """`app create` submits m's agent for h1 as a Slurm job; a task added later runs there; after `app
    set-finished` the agent stops by itself and its job leaves the queue."""
    from scalebox_stream.launch.state_service import stop_state_service

    home, name = tmp_path / "home", f"served-slurm-{uuid.uuid4().hex[:6]}"
    (tmp_path / "task.sh").write_text('#!/bin/sh\nprintf "%s@%s" "$1" "$HOST_NAME" > "$WORK_DIR/custom-out.txt"\n')
    (tmp_path / "task.sh").chmod(0o755)
    app = {"name": name, "modules": {"m": {"command": "./task.sh", "slots": ["h1:1"]}}, "clusters": {"local": {
        "parameters": {"agent_start": "slurm", "scalebox_command": str(Path(sys.prefix) / "bin" / "scalebox")},
        "hosts": {"h0": {"role": "head"}, "h1": {}}}}}
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    prefix = f"sbx-{name}-"
    try:
        created = scalebox(["app", "create", str(tmp_path / "app.yaml")], kafka_bootstrap, pg_dsn, home=home)
        assert created.code == 0, created.stderr
        assert _jobs(prefix) == {f"{prefix}m-h1"}, "squeue lists the agent's job once `app create` returned"
        added = scalebox(["task", "add", "--app-id", name, "one"], kafka_bootstrap, pg_dsn, home=home)
        assert added.code == 0, added.stderr
        deadline = time.monotonic() + 60
        while not [t for t in list_tasks(kafka_bootstrap, pg_dsn, name) if t["status"] == "succeeded"]:
            assert time.monotonic() < deadline, "the task did not run"
            time.sleep(0.3)
        assert [t["custom_out"] for t in list_tasks(kafka_bootstrap, pg_dsn, name)] == ["one@h1"]
        finished = scalebox(["app", "set-finished", "--app-id", name, "done"], kafka_bootstrap, pg_dsn, home=home)
        assert finished.code == 0, finished.stderr
        deadline = time.monotonic() + 30
        while _jobs(prefix):
            assert time.monotonic() < deadline, "the agent's job is still queued after the app finished"
            time.sleep(0.3)
        logs = scalebox(["logs", name], kafka_bootstrap, pg_dsn, home=home)
        assert "stopping by itself: app finished: done" in logs.stdout, logs.stdout[-2000:]
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)
        stop_state_service(home, kafka_bootstrap)
