"""A state owner that outlives `scalebox run` and `scalebox app create` on this machine, as the local Kafka does.

Scalebox scripts read an app's state after its run (`app_id=$(echo 1000 | scalebox run | cut ...)`, then
`APP_ID=$app_id scalebox semaphore get NAME`): every state command needs an owner to answer it, so `run` and
`app create` make sure one runs. It is started detached (`scalebox state-owner --owner-id HOST.service`) once
per Kafka and state prefix, its pid and what it serves kept in `$SCALEBOX_HOME/state-owner.json`, its log in
`$SCALEBOX_HOME/logs/state-owner.log`. `stop_state_service` (used by nothing but tests and the docs' advice)
ends it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from scalebox_stream.config import child_environment

RECORD = "state-owner.json"


def _serves(home: Path) -> dict | None:
    """The record of the live service owner, or None (a stale record is removed)."""
    path = home / RECORD
    try:
        record = json.loads(path.read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    return record


def ensure_state_service(home: Path, kafka: str) -> int:
    """The pid of this machine's service owner for `kafka` (and `SCALEBOX_STATE_PREFIX`), started if none runs."""
    prefix = os.environ.get("SCALEBOX_STATE_PREFIX", "")
    record = _serves(home)
    if record is not None and record.get("kafka") == kafka and record.get("prefix", "") == prefix:
        return int(record["pid"])
    if record is not None:
        stop_state_service(home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "scalebox_stream.cli.main", "state-owner", "--owner-id",
            f"{socket.gethostname()}.service", "--kafka", kafka]
    with open(home / "logs" / "state-owner.log", "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_environment({"SCALEBOX_KAFKA": kafka}), start_new_session=True)
    (home / RECORD).write_text(json.dumps({"pid": process.pid, "kafka": kafka, "prefix": prefix}))
    return process.pid


def stop_state_service(home: Path) -> bool:
    """SIGTERM the service owner; False if none ran."""
    record = _serves(home)
    if record is None:
        return False
    os.kill(int(record["pid"]), signal.SIGTERM)
    (home / RECORD).unlink(missing_ok=True)
    return True
