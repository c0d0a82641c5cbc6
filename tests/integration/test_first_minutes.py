"""What a new user sees at 80 columns: `scalebox run` on the primes example, then `task list`, `status`,
`app list` and `--version`: no cut status, ids that can be typed back, and no library log line on the
terminal (librdkafka's go to the run's log file), even when librdkafka has something to say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline import REPO

from scalebox_stream.kafka.security import forwarded_env

STATUSES = {"created", "waiting", "running", "succeeded", "failed", "retrying", "timed_out", "skipped"}
LIBRARY_LINE = re.compile(r"%\d\||rdkafka|librdkafka|psycopg")
REFUSED = "127.0.0.1:1"
"""A bootstrap server nobody listens on, first in the list: librdkafka logs (level 3, `FAIL`) each refused
connection, so there is a library log line to keep off the terminal."""


def _sbx(args: list[str], kafka: str, pg: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **forwarded_env(kafka), "SCALEBOX_KAFKA": f"{REFUSED},{kafka}", "SCALEBOX_PG": pg,
           "SCALEBOX_HOME": str(home), "COLUMNS": "80", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def _terminal_lines(ran: subprocess.CompletedProcess) -> list[str]:
    lines = (ran.stdout + ran.stderr).splitlines()
    assert not [line for line in lines if LIBRARY_LINE.search(line)], "a library log line reached the terminal"
    assert not [line for line in lines if len(line.rstrip()) > 80], "a line wider than 80 columns"
    return lines


def test_run_list_status_at_80_columns(kafka_bootstrap: str, pg_dsn: str, tmp_path: Path) -> None:
    ran = _sbx(["run", "examples/primes/app-process.yaml", "1000"], kafka_bootstrap, pg_dsn, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = _terminal_lines(ran)
    assert lines[0] == '{"app_id":primes}'  # stdout: the app id, as Scalebox prints it
    assert lines[1].startswith("primes: sent 1 task(s)")
    summary = lines.index(next(line for line in lines if line.startswith("primes: finished in")))
    assert lines[summary + 1].split() == ["module", "created", "waiting", "running", "succeeded", "failed",
                                          "attempts"]
    assert lines[-1] == "result: 168", "the app's result comes last"
    assert len(lines) <= summary + 5, "progress lines: one every few seconds, not one per change"
    run_log = (tmp_path / "logs/primes/run.log").read_text()
    assert "librdkafka" in run_log and REFUSED in run_log, "librdkafka's lines go to the run's log file"

    listed = _sbx(["task", "list", "--app", "primes", "--module", "calc", "--limit", "10"], kafka_bootstrap, pg_dsn,
                  tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = _terminal_lines(listed)
    assert rows[0].split()[:3] == ["id", "module", "status"]
    ids = []
    for row in rows[1:]:
        if row.startswith("("):
            continue  # the stderr note naming the columns left out
        short, module, status = row.split()[:3]
        assert module == "calc" and status in STATUSES, row
        assert re.fullmatch(r"[0-9a-f]{8}[0-9a-f-]*", short), row
        ids.append(short)
    assert len(ids) == 10
    shown = _sbx(["task", "show", ids[0]], kafka_bootstrap, pg_dsn, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert re.match(rf"task {ids[0]}[0-9a-f-]*  primes/calc  status succeeded", shown.stdout), shown.stdout

    ambiguous = _sbx(["task", "show", ids[0][:1]], kafka_bootstrap, pg_dsn, tmp_path)
    assert ambiguous.returncode != 0 and f"id prefix '{ids[0][:1]}' is ambiguous" in ambiguous.stderr

    status = _sbx(["status", "--app", "primes"], kafka_bootstrap, pg_dsn, tmp_path)
    assert status.returncode == 0, status.stderr
    table = _terminal_lines(status)
    assert table[0].split() == ["module", "state", "created", "waiting", "running", "succeeded", "failed",
                                "attempts"]
    assert {line.split()[0] for line in table[1:3]} == {"calc", "router"}
    assert all(line.split()[1] == "active" for line in table[1:3])

    apps = _sbx(["app", "list"], kafka_bootstrap, pg_dsn, tmp_path)
    assert apps.returncode == 0, apps.stderr
    assert any(line.split()[0] == "primes" for line in _terminal_lines(apps)[1:])

    version = _sbx(["--version"], kafka_bootstrap, pg_dsn, tmp_path, timeout=30)
    assert version.returncode == 0, version.stderr
    first, kafka, pg = _terminal_lines(version)
    assert first.startswith("scalebox-stream ") and kafka.endswith(": reachable") and pg.startswith("PostgreSQL ")
