"""A state owner that outlives `scalebox run` and `scalebox app create` on this machine, as the local Kafka does.

Scalebox scripts read an app's state after its run (`app_id=$(echo 1000 | scalebox run | cut ...)`, then
`APP_ID=$app_id scalebox semaphore get NAME`): every state command needs an owner to answer it, so `run` and
`app create` make sure one runs. It is started detached (`scalebox state-owner --owner-id HOST.service`) once
per Kafka and state prefix (`SCALEBOX_STATE_PREFIX`), its pid and what it serves kept in
`$SCALEBOX_HOME/state-owner-<key>.json`, its log in `$SCALEBOX_HOME/logs/state-owner-<key>.log`.
`stop_state_service` ends it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from scalebox_stream.config import child_environment


def _key(kafka: str, prefix: str) -> str:
    return hashlib.sha256(f"{kafka}\0{prefix}".encode()).hexdigest()[:10]


def _record(home: Path, kafka: str, prefix: str) -> Path:
    return home / f"state-owner-{_key(kafka, prefix)}.json"


def _serves(path: Path) -> dict | None:
    """The record of a live service owner, or None (a stale record is removed)."""
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
    path = _record(home, kafka, prefix)
    if (record := _serves(path)) is not None:
        return int(record["pid"])
    (home / "logs").mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "scalebox_stream.cli.main", "state-owner", "--owner-id",
            f"{socket.gethostname()}.service", "--kafka", kafka]
    with open(home / "logs" / f"state-owner-{_key(kafka, prefix)}.log", "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_environment({"SCALEBOX_KAFKA": kafka}), start_new_session=True)
    path.write_text(json.dumps({"pid": process.pid, "kafka": kafka, "prefix": prefix}))
    return process.pid


def stop_state_service(home: Path, kafka: str) -> bool:
    """SIGTERM the service owner of `kafka` (and `SCALEBOX_STATE_PREFIX`); False if none ran."""
    path = _record(home, kafka, os.environ.get("SCALEBOX_STATE_PREFIX", ""))
    record = _serves(path)
    if record is None:
        return False
    os.kill(int(record["pid"]), signal.SIGTERM)
    path.unlink(missing_ok=True)
    return True
