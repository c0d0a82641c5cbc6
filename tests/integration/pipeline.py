"""Helpers for pipeline tests: run the real `scalebox` CLI against the test services."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from scalebox_stream.kafka.security import forwarded_env

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
FAILS_ON_BAD = "[/bin/sh, -c, 'case \"$0\" in bad*) exit 3;; esac']"
"""A module command (app-file YAML) that fails with exit code 3 for bodies starting with `bad`, else succeeds."""


@dataclass
class CliResult:
    """Exit code and output of one CLI call."""

    code: int
    stdout: str
    stderr: str


def scalebox(args: list[str], kafka: str, pg: str, timeout: float = 300, stdin: str | None = None,
             home: Path | None = None) -> CliResult:
    """Run `scalebox ARGS` in a child process with the test services. With a `home` of its own, the child
    still logs in to the test Kafka as this process does (`forwarded_env`: the login files' paths)."""
    env = {**os.environ, "SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg}
    if home is not None:
        env.update({**forwarded_env(kafka), "SCALEBOX_HOME": str(home)})
    proc = subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, input=stdin, cwd=REPO)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def list_tasks(kafka: str, pg: str, app: str, module: str | None = None, since: datetime | None = None) -> list[dict]:
    """`scalebox task list --json` parsed."""
    args = ["task", "list", "--app", app, "--json"]
    if module:
        args += ["--module", module]
    if since:
        args += ["--since", since.strftime("%Y-%m-%dT%H:%M:%S")]
    result = scalebox(args, kafka, pg)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def until(what: str, check: Callable[[], T], timeout_s: float = 60.0) -> T:
    """`check()`'s first truthy value, looked for every 0.3 s; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return value


def utc_now() -> datetime:
    """Now, as the naive UTC time `--since` takes (whole seconds, rounded down)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now, and never one this process handed out before: each call releases
    its port, so the kernel may pick it again for the next call (a broker given one port for two listeners does
    not start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
