"""Retry rules and timeouts on real services (Scalebox's retry and timeout feature tests)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from pipeline import list_tasks, scalebox, utc_now

RETRY_PROGRAM = """#!/bin/sh
if [ "$1" = 0 ]; then printf '1\\n2\\n3\\n' > "$WORK_DIR/sink-tasks.txt"; fi
exit $(( $1 % 4 ))
"""


def _attempts(task_id: str, kafka: str, pg: str) -> list[dict]:
    result = scalebox(["task", "show", task_id, "--json"], kafka, pg)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["attempts_detail"]


def test_scalebox_retry_feature(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"retry-{uuid.uuid4().hex[:8]}"
    (tmp_path / "run.sh").write_text(RETRY_PROGRAM)
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  retry_test:\n    command: ./run.sh\n    sink_modules: [retry_test]\n"
        "    start_task: 0\n    parameters:\n      retry_rules: \"['1:3','2:2','*']\"\n")
    since = utc_now()
    result = scalebox(["run", str(tmp_path / "app.yaml")], kafka_bootstrap, pg_dsn)
    assert result.code == 1, "tasks 1, 2 and 3 fail, so the run fails"
    tasks = {t["body"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, app, since=since)}
    assert {b: t["status"] for b, t in tasks.items()} == {"0": "succeeded", "1": "failed", "2": "failed",
                                                          "3": "failed"}
    runs = {b: _attempts(t["task_id"], kafka_bootstrap, pg_dsn) for b, t in tasks.items()}
    assert {b: len(r) for b, r in runs.items()} == {"0": 1, "1": 4, "2": 3, "3": 2}
    assert sum(len(r) for r in runs.values()) == 10
    assert [r["exit_code"] for r in runs["3"]] == [3, 3]
    assert [r["retry_rule"] for r in runs["1"]] == ["1:3", "1:3", "1:3", None]
    assert [r["retry_rule"] for r in runs["3"]] == ["*:1", None]
    assert all(t["attempts"] == len(runs[b]) for b, t in tasks.items())


def test_retry_backoff_delays_the_next_attempt(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"backoff-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  flaky:\n    command: [/bin/sh, -c, 'exit 7']\n"
        "    retry:\n      max_attempts: 3\n      backoff: {initial: 1s, factor: 2}\n"
        "      rules: [{exit_codes: [7], retries: 5}]\n")
    since = utc_now()
    assert scalebox(["run", str(tmp_path / "app.yaml"), "x"], kafka_bootstrap, pg_dsn).code == 1
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    runs = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    assert len(runs) == 3, "max_attempts caps the retries"
    from datetime import datetime
    starts = [datetime.fromisoformat(r["started_at"]) for r in runs]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps


def _ticker_yaml(app: str, executor_block: str) -> str:
    return (f"name: {app}\nmodules:\n  tick:\n{executor_block}    task_max_seconds: 3\n")


TICKER = "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo line $i; sleep 1; done"


@pytest.mark.parametrize("executor", ["process", "docker"])
def test_timeout_kills_the_attempt_and_records_124(executor, tmp_path, kafka_bootstrap, pg_dsn, request):
    app = f"timeout-{executor}-{uuid.uuid4().hex[:8]}"
    marker = f"sbx-timeout-marker-{uuid.uuid4().hex}"
    if executor == "docker":
        request.getfixturevalue("busybox_image")
        block = f"    image: scalebox/base:busybox\n    command: [/bin/sh, -c, '{TICKER}', {marker}]\n"
    else:
        block = f"    command: [/bin/sh, -c, '{TICKER}', {marker}]\n"
    (tmp_path / "app.yaml").write_text(_ticker_yaml(app, block))
    since = utc_now()
    began = time.monotonic()
    assert scalebox(["run", str(tmp_path / "app.yaml"), "x"], kafka_bootstrap, pg_dsn).code == 1
    assert time.monotonic() - began < 20, "the task was not cut short"
    (task,) = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    (run,) = _attempts(task["task_id"], kafka_bootstrap, pg_dsn)
    assert (run["exit_code"], run["status"], run["timed_out"]) == (124, "timed_out", True)
    assert 2.5 <= run["run_s"] <= 6, run["run_s"]
    assert run["stdout"].startswith("line 1\nline 2\n") and "line 10" not in run["stdout"]
    leftovers = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.strip()
    assert leftovers == "", f"processes left behind: {leftovers}"
    if executor == "docker":
        client = request.getfixturevalue("docker_client")
        assert client.containers.list(all=True, filters={"label": f"scalebox.app={app}"}) == []
