"""Scalebox's task-perspective feature test, reproduced: three chained tasks, every field recorded."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

from pipeline import list_tasks, scalebox, utc_now

PROGRAM = r"""#!/bin/sh
set -e
cd "$WORK_DIR"
case "$1" in
0)
  cat > task-exec.json <<'JSON'
{"statusCode": 0, "inputBytes": 1234, "outputBytes": 5678, "messageText": "custom text of task 0",
 "timestamps": ["2023-10-24T10:00:00Z,begin", "2023-10-24T10:00:01.5Z,read",
                "2023-10-24T10:00:02.123456Z,compute", "2023-10-24T18:00:03.123456789+08:00,write",
                {"timestamp": "2023-10-24T10:00:04,250Z", "label": "end"}]}
JSON
  echo 1 > sink-tasks.txt
  echo "stdout of task 0"
  echo "stderr of task 0" >&2
  ;;
1)
  printf '/etc/passwd\n/etc/group\n' > input-files.txt
  head -c 1000 /dev/zero > first.out
  head -c 2345 /dev/zero > second.out
  printf 'first.out\nsecond.out\n' > output-files.txt
  printf '2023-10-24T18:00:00.123+0800,copied\n' > timestamps.txt
  printf 'done 1' > custom-out.txt
  echo 2 > sink-tasks.txt
  ;;
2)
  ;;
esac
"""

T0 = int(datetime(2023, 10, 24, 10, tzinfo=UTC).timestamp()) * 1_000_000


def _show(task_id: str, kafka: str, pg: str) -> dict:
    result = scalebox(["task", "show", task_id, "--json"], kafka, pg)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_three_chained_tasks_record_every_field(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"perspective-{uuid.uuid4().hex[:8]}"
    (tmp_path / "run.sh").write_text(PROGRAM)
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "app.yaml").write_text(f"name: {app}\nmodules:\n  step:\n    command: ./run.sh\n"
                                       "    sink_modules: [step]\n")
    since = utc_now()
    result = scalebox(["run", str(tmp_path / "app.yaml"), "0"], kafka_bootstrap, pg_dsn)
    assert result.code == 0, result.stderr
    tasks = {t["body"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, app, since=since)}
    assert sorted(tasks) == ["0", "1", "2"]
    shown = {body: _show(t["task_id"], kafka_bootstrap, pg_dsn) for body, t in tasks.items()}
    runs = {body: s["attempts_detail"] for body, s in shown.items()}
    assert all(len(r) == 1 and r[0]["status"] == "succeeded" for r in runs.values())
    first, second, third = runs["0"][0], runs["1"][0], runs["2"][0]

    # lineage: 0 -> 1 -> 2
    assert shown["0"]["children"] == [tasks["1"]["task_id"]]
    assert shown["1"]["children"] == [tasks["2"]["task_id"]]
    assert tasks["2"]["parent_task_id"] == tasks["1"]["task_id"]

    # task 0: task-exec.json
    assert (first["input_bytes"], first["output_bytes"], first["status_code"]) == (1234, 5678, 0)
    assert first["message_text"] == "custom text of task 0"
    assert first["stdout"] == "stdout of task 0\n" and first["stderr"] == "stderr of task 0\n"
    assert [(s["label"], s["at"] - T0) for s in first["user_timestamps"]] == [
        ("begin", 0), ("read", 1_500_000), ("compute", 2_123_456), ("write", 3_123_456), ("end", 4_250_000)]

    # task 1: file lists summed from the files' sizes
    etc = os.path.getsize("/etc/passwd") + os.path.getsize("/etc/group")
    assert (second["input_bytes"], second["output_bytes"]) == (etc, 1000 + 2345)
    assert second["custom_out"] == "done 1" and second["message_text"] is None
    assert [(s["label"], s["at"] - T0) for s in second["user_timestamps"]] == [("copied", 123_000)]
    assert second["read_bytes"] >= etc or second["read_bytes"] > 0
    assert second["write_bytes"] >= 1000 + 2345

    # task 2: nothing reported
    for field in ("input_bytes", "output_bytes", "status_code", "message_text"):
        assert third[field] is None, field
    assert (third["stdout"], third["stderr"], third["custom_out"], third["user_timestamps"]) == ("", "", "", [])

    # identity, resources and timestamps for all three
    for run in (first, second, third):
        assert run["executor"] == "process" and run["host"] and run["agent"] and run["slot"] == 0
        assert run["exit_code"] == 0 and run["signal"] is None and run["timed_out"] is False
        assert run["cpu_user_s"] is not None and run["cpu_system_s"] is not None
        stamps = [run[k] for k in ("created_at", "accepted_at", "started_at", "finished_at", "recorded_at")]
        assert stamps == sorted(stamps), stamps
        assert run["queue_wait_s"] >= 0 and run["run_s"] >= 0 and run["end_to_end_s"] >= run["run_s"]


def test_megabyte_of_stdout_with_invalid_utf8_is_capped_keeping_the_right_end(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"bigout-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "loud.py"
    script.write_text("import sys\nout = sys.stdout.buffer\nout.write(b'HEAD-MARK\\n')\n"
                      "out.write((b'x' * 99 + b'\\xff\\n') * 10_000)\nout.write(b'TAIL-MARK\\n')\n"
                      "sys.stderr.write('E' * 100)\n")
    yaml = (f"name: {app}\nmodules:\n  tail:\n    command: [python3, {script}]\n    output_text_size: 4096\n"
            f"  head:\n    command: [python3, {script}]\n    output_text_size: 4096\n    text_trunc_mode: TAIL\n")
    (tmp_path / "app.yaml").write_text(yaml)
    since = utc_now()
    for module in ("tail", "head"):
        result = scalebox(["run", str(tmp_path / "app.yaml"), "--module", module, "go"], kafka_bootstrap, pg_dsn)
        assert result.code == 0, result.stderr
    for task in list_tasks(kafka_bootstrap, pg_dsn, app, since=since):
        (run,) = _show(task["task_id"], kafka_bootstrap, pg_dsn)["attempts_detail"]
        assert run["stdout_bytes"] == 10 + 101 * 10_000 + 10
        assert 4096 <= len(run["stdout"]) <= 4 * 4096  # 4096 bytes, \xff kept as a 4-character escape
        assert "\\xff" in run["stdout"]
        if task["module"] == "tail":  # HEAD mode: the head is dropped, the tail kept
            assert run["stdout"].endswith("TAIL-MARK\n") and "HEAD-MARK" not in run["stdout"]
        else:
            assert run["stdout"].startswith("HEAD-MARK\n") and "TAIL-MARK" not in run["stdout"]
        assert run["stderr"] == "E" * 100
