"""A state owner that outlives `scalebox run` and `scalebox app create` on this machine, while the apps it serves do.

Scalebox scripts read an app's state after its run (`app_id=$(echo 1000 | scalebox run | cut ...)`, then
`APP_ID=$app_id scalebox semaphore get NAME`): every state command needs an owner to answer it, so `app create`
makes sure one runs. It is started detached (`scalebox state-owner --owner-id HOST.service --with-apps`) once per
Kafka and state prefix (`SCALEBOX_STATE_PREFIX`); its pid, what it serves and the apps it serves are kept in
`$SCALEBOX_HOME/state-owner-<key>.json`, its log in `$SCALEBOX_HOME/logs/state-owner-<key>.log`. It stops by
itself once none of its apps has a live server (`app serve` ends when the app is finished, stopped or deleted),
when another cluster answers at its Kafka address, or when none has answered for `UNREACHABLE_S`; a state command
after that serves itself (`state.service.owner_unless_serving`). `stop_state_service` ends it at once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scalebox_stream.config import child_environment
from scalebox_stream.launch.serve import server_pid

APPS_GRACE_S = 120.0
"""An app added this recently counts as served even before its server's pid file is there (`app create` starts the
owner first)."""
UNREACHABLE_S = 120.0


def _key(kafka: str, prefix: str) -> str:
    return hashlib.sha256(f"{kafka}\0{prefix}".encode()).hexdigest()[:10]


def _record(home: Path, kafka: str, prefix: str) -> Path:
    return home / f"state-owner-{_key(kafka, prefix)}.json"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The record's lock: adding an app and the owner's decision to stop exclude each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _serves(path: Path) -> dict | None:
    """The record of a live service owner, or None (a stale record is removed)."""
    try:
        record = json.loads(path.read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    return record


def ensure_state_service(home: Path, kafka: str, app: str | None = None, apps_grace_s: float = APPS_GRACE_S,
                         unreachable_s: float = UNREACHABLE_S, check_s: float = 5.0) -> int:
    """The pid of this machine's service owner for `kafka` (and `SCALEBOX_STATE_PREFIX`), started if none runs;
    `app` is added to the apps it serves."""
    prefix = os.environ.get("SCALEBOX_STATE_PREFIX", "")
    path = _record(home, kafka, prefix)
    with _locked(path):
        record = _serves(path)
        if record is None:
            (home / "logs").mkdir(parents=True, exist_ok=True)
            args = [sys.executable, "-m", "scalebox_stream.cli.main", "state-owner", "--owner-id",
                    f"{socket.gethostname()}.service", "--kafka", kafka, "--with-apps", "--apps-grace-s",
                    str(apps_grace_s), "--unreachable-s", str(unreachable_s), "--check-s", str(check_s)]
            with open(home / "logs" / f"state-owner-{_key(kafka, prefix)}.log", "ab") as log:
                process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=child_environment({"SCALEBOX_KAFKA": kafka,
                                                                  "SCALEBOX_HOME": str(home)}),
                                           start_new_session=True)
            record = {"pid": process.pid, "kafka": kafka, "prefix": prefix, "apps": {}}
        if app is not None:
            record.setdefault("apps", {})[app] = time.time()
        path.write_text(json.dumps(record))
    return int(record["pid"])


def still_serving(home: Path, kafka: str, pid: int, apps_grace_s: float = APPS_GRACE_S) -> bool:
    """Whether the service owner `pid` is still needed: the record is its own and one of its apps has a live server
    (or was added within `apps_grace_s`). If not, its record is removed (under the lock, so an `app create` at
    the same moment starts a new owner rather than count on this one)."""
    path = _record(home, kafka, os.environ.get("SCALEBOX_STATE_PREFIX", ""))
    with _locked(path):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if record.get("pid") != pid:
            return False
        now = time.time()
        if any(now - added < apps_grace_s or server_pid(home, app) is not None
               for app, added in record.get("apps", {}).items()):
            return True
        path.unlink(missing_ok=True)
        return False


def stop_state_service(home: Path, kafka: str) -> bool:
    """SIGTERM the service owner of `kafka` (and `SCALEBOX_STATE_PREFIX`); False if none ran."""
    path = _record(home, kafka, os.environ.get("SCALEBOX_STATE_PREFIX", ""))
    with _locked(path):
        record = _serves(path)
        if record is None:
            return False
        os.kill(int(record["pid"]), signal.SIGTERM)
        path.unlink(missing_ok=True)
    return True
