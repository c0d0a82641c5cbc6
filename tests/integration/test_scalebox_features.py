"""Scalebox's feature tests, in their style, through real Kafka, PostgreSQL and Docker.

Each app directory under `scalebox_apps/` is written the way Scalebox writes its feature tests: an `app.yaml`
with `${PWD}/code` as `code_path`, a `scalebox.env` with blank defaults, module scripts that run on the agent
base image (`hub.cstcloud.cn/scalebox/agent`, built locally) under the module contract. The test copies a
directory, `cd`s into it and runs `scalebox run app.yaml`, as a Scalebox user would; `RUN_TAG` keeps each
run's app name its own, and `TRACE_HOST_DIR` is a host directory the scripts reach through the standard
mount `/local_data_root`.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from pipeline import REPO, CliResult, list_tasks, scalebox, utc_now

APPS = Path(__file__).resolve().parent / "scalebox_apps"
AGENT_BASE = "hub.cstcloud.cn/scalebox/agent:latest"


@pytest.fixture(scope="module")
def agent_base(example_images: list[str]) -> str:
    """Scalebox's agent image name, tagged on the local agent base image by .ci/build-images.sh."""
    return AGENT_BASE


def _run(name: str, tmp_path: Path, kafka: str, pg: str, *args: str, **env: str) -> tuple[CliResult, str, Path]:
    """`cd <copy of scalebox_apps/name>; scalebox run app.yaml ARGS` with `env`; (result, app name, trace dir)."""
    app_dir = tmp_path / name
    shutil.copytree(APPS / name, app_dir)
    # The scripts reach it through /local_data_root as the container's non-root user: a world-writable directory
    # whose parents anyone may pass (pytest's own tmp_path sits under a 0700 directory).
    trace = Path(tempfile.mkdtemp(prefix="sbx-trace-", dir="/tmp"))
    trace.chmod(0o777)
    atexit.register(shutil.rmtree, trace, True)
    tag = uuid.uuid4().hex[:8]
    environ = {**os.environ, "SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg, "PWD": str(app_dir), "RUN_TAG": tag,
               "TRACE_HOST_DIR": str(trace), "PYTHONPATH": str(REPO),
               # The operator lets modules mount the host's / (the standard mount /local_data_root), as a
               # Scalebox site does; without it the agent leaves that mount out.
               "SCALEBOX_VOLUME_ALLOW": "/", **env}
    proc = subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", "run", "app.yaml", *args],
                          capture_output=True, text=True, timeout=180, env=environ, cwd=app_dir)
    app = (APPS / name / "app.yaml").read_text().split("name: ", 1)[1].split("\n", 1)[0]
    return CliResult(proc.returncode, proc.stdout, proc.stderr), app.replace("${RUN_TAG}", tag).replace(".", "-"), trace


def _attempts(task_id: str, kafka: str, pg: str) -> list[dict]:
    result = scalebox(["task", "show", task_id, "--json"], kafka, pg)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["attempts_detail"]


def _lines(path: Path, wait_s: float = 0.0) -> list[str]:
    """The lines of a trace file (waiting up to `wait_s` for it to appear)."""
    deadline = time.monotonic() + wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return path.read_text().split() if path.exists() else []


def test_retry_test_runs_ten_times(agent_base, tmp_path, kafka_bootstrap, pg_dsn):
    since = utc_now()
    result, app, _ = _run("retry", tmp_path, kafka_bootstrap, pg_dsn)
    assert result.code == 1, f"tasks 1, 2 and 3 fail, so the run fails\n{result.stderr}"
    tasks = {t["body"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, app, since=since)}
    assert {b: t["status"] for b, t in tasks.items()} == {"0": "succeeded", "1": "failed", "2": "failed",
                                                          "3": "failed"}
    runs = {b: _attempts(t["task_id"], kafka_bootstrap, pg_dsn) for b, t in tasks.items()}
    assert {b: len(r) for b, r in runs.items()} == {"0": 1, "1": 4, "2": 3, "3": 2}
    assert sum(len(r) for r in runs.values()) == 10
    assert {b: {r["exit_code"] for r in rs} for b, rs in runs.items()} == {"0": {0}, "1": {1}, "2": {2}, "3": {3}}


def test_timeout_gen_ends_with_124(agent_base, tmp_path, kafka_bootstrap, pg_dsn):
    since = utc_now()
    began = time.monotonic()
    result, app, _ = _run("timeout", tmp_path, kafka_bootstrap, pg_dsn)
    assert result.code == 1, result.stderr
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    assert task["exit_code"] == 124 and task["status"] == "failed"
    (run,) = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    assert run["timed_out"] is True
    dates = [line for line in run["stdout"].splitlines() if line.strip()]
    assert 2 <= len(dates) <= 4, f"about task_max_seconds (3) date lines before the kill: {dates}"
    assert time.monotonic() - began < 60, "the 20-second loop was cut short"


@pytest.mark.parametrize(("executor", "container_mode"), [("docker", "task"), ("docker", "slot"), ("process", "")])
def test_side_car_default_scripts(executor, container_mode, agent_base, tmp_path, kafka_bootstrap, pg_dsn):
    since = utc_now()
    host = {"TRACE_ROOT": ""} if executor == "process" else {}  # a process sees the host's paths as they are
    result, app, trace = _run("sidecar", tmp_path, kafka_bootstrap, pg_dsn, EXECUTOR=executor,
                              CONTAINER_MODE=container_mode, **host)
    assert result.code == 0, result.stderr
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    (run,) = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    code = "/app/bin" if executor == "docker" else str(tmp_path / "sidecar" / "code")
    assert run["stdout"].strip() == f"In file:{code}/run.sh"
    assert _lines(trace / "trace.log") == ["setup.sh", "check.sh", "run.sh", "teardown.sh"], \
        "setup once, check then run, teardown once when the agent stops"
    env = dict(line.split("=", 1) for line in (trace / "run-env.txt").read_text().splitlines() if "=" in line)
    assert env["APP_ID"] == app and env["MODULE_ID"] == env["JOB_ID"] == "side-car"
    assert env["TASK_ID"] == task["task_id"] and env["SLOT_ID"]
    if executor == "docker":
        assert env["WORK_DIR"] == "/work" and env["CLUSTER_DATA_ROOT"] == "/cluster_data_root"
        assert "mounts ok" in (trace / "run-env.txt").read_text()
    assert run["extra_attributes"] == {"module": "side-car", "script": "run.sh"}
    shown = scalebox(["task", "show", task["task_id"]], kafka_bootstrap, pg_dsn)
    assert 'extra attributes:\n{"module": "side-car", "script": "run.sh"}' in shown.stdout, shown.stdout


def test_side_car_action_scripts(agent_base, tmp_path, kafka_bootstrap, pg_dsn):
    since = utc_now()
    result, app, trace = _run("sidecar", tmp_path, kafka_bootstrap, pg_dsn,
                              ACTION_RUN="/app/bin/run-custom.sh", ACTION_SETUP="/app/bin/setup-custom.sh",
                              ACTION_TEARDOWN="/app/bin/teardown-custom.sh", ACTION_CHECK="/app/bin/check-custom.sh")
    assert result.code == 0, result.stderr
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    (run,) = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    assert run["stdout"].strip() == "In file:/app/bin/run-custom.sh"
    assert _lines(trace / "trace.log") == ["setup-custom.sh", "check-custom.sh", "run-custom.sh",
                                           "teardown-custom.sh"]


@pytest.mark.parametrize("container_mode", ["task", "slot"])
def test_a_failing_setup_fails_the_task_instead_of_holding_it(container_mode, agent_base, tmp_path, kafka_bootstrap,
                                                              pg_dsn):
    """The module has a check.sh, and its setup always fails: the task is not re-checked forever (the agent
    would hang) but fails with the setup's error, and the run ends."""
    since = utc_now()
    began = time.monotonic()
    result, app, trace = _run("sidecar", tmp_path, kafka_bootstrap, pg_dsn, ACTION_SETUP="/app/bin/setup-fails.sh",
                              CONTAINER_MODE=container_mode)
    assert result.code == 1, result.stderr
    assert time.monotonic() - began < 120
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    assert task["status"] == "failed"
    assert task["exit_code"] == 7 or container_mode == "slot", "task mode: the setup's own exit code"
    (run,) = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    assert run["error"].startswith("setup failed") and "licence server unreachable" in run["error"], run["error"]
    lines = _lines(trace / "trace.log")
    assert "setup-fails.sh" in lines and not {"check.sh", "run.sh", "teardown.sh"} & set(lines), lines


def test_check_test_admits_on_the_third_check(agent_base, tmp_path, kafka_bootstrap, pg_dsn):
    since = utc_now()
    result, app, trace = _run("check", tmp_path, kafka_bootstrap, pg_dsn)
    assert result.code == 0, result.stderr
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    assert task["body"] == "ANY" and task["status"] == "succeeded"
    assert len(_lines(trace / "checks.log")) == 3, "refused twice (exit 1, 2), admitted the third time"
    assert task["custom_out"].split() == ["check_code:0", "gate", "passed"], \
        "the admitted check's output stays in /work for the run"


def test_an_image_built_from_scalebox_agent_adds_tasks(agent_base, docker_client, tmp_path, kafka_bootstrap, pg_dsn):
    image = f"scalebox-test/from-agent:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(path=str(APPS / "from-agent" / "image"), tag=image, rm=True, pull=False)
    try:
        since = utc_now()
        result, app, trace = _run("from-agent", tmp_path, kafka_bootstrap, pg_dsn, "--module", "hello",
                                  "-H", "part=p1", "b1", HELLO_IMAGE=image)
    finally:
        docker_client.images.remove(image, force=True)
    assert result.code == 0, result.stderr
    tasks = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    by_module: dict[str, list[dict]] = {}
    for t in tasks:
        by_module.setdefault(t["module"], []).append(t)
    assert sorted(t["body"] for t in by_module["relay"]) == ["b1-added", "b1-sent"]
    assert sorted(t["body"] for t in by_module["last"]) == sorted(
        f"b1-{how}{suffix}" for how in ("added", "sent") for suffix in ("", "-msg", "-old"))
    assert all(t["status"] == "succeeded" for t in tasks)
    (hello,) = by_module["hello"]
    (run,) = _attempts(hello["task_id"], kafka_bootstrap, pg_dsn)
    assert run["stdout"].split() == ["part:p1", "routes:2"], "the default network is the bridge: a route out"
    relayed = {t["body"]: t["custom_out"].split() for t in by_module["relay"]}
    assert relayed["b1-added"] == ["b1-added", "routes:0"], "network: none, one line away"
    assert not (trace / "to-remove").exists(), "removed-files.txt: the agent deleted the file"
    assert _lines(trace / "image-check.log") == ["b1"], "the image's own /app/share/bin/check.sh ran before the run"
