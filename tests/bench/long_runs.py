"""Shared pieces of the long benchmarks (`bench_million.py`, `bench_thousand_apps.py`): a Kafka and a
PostgreSQL of their own, and a deadline, so a run that is cut short still reports what it measured.

Not a benchmark itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import testpath  # noqa: F401  (tests/ on sys.path)
from harness import REPO, say
from support.homes import share_kafka_jars


@dataclass(frozen=True)
class Local:
    """A Kafka and a PostgreSQL of the benchmark's own, in `home`."""

    home: Path
    kafka: str
    pg: str

    def env(self) -> dict[str, str]:
        """This process's environment pointed at `home` (and not at the shared services)."""
        env = {k: v for k, v in os.environ.items() if k not in ("SCALEBOX_KAFKA", "SCALEBOX_PG")}
        return {**env, "SCALEBOX_HOME": str(self.home)}

    def scalebox(self, args: list[str], timeout: float = 600, extra: dict[str, str] | None = None,
                 services: bool = True) -> subprocess.CompletedProcess:
        """Run the `scalebox` CLI on these services; its completed process (output captured)."""
        env = {**self.env(), **(extra or {})}
        if services:
            env.update({"SCALEBOX_KAFKA": self.kafka, "SCALEBOX_PG": self.pg})
        return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=REPO)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ok(proc: subprocess.CompletedProcess, what: str) -> None:
    """Raise with the output's tail if the command failed."""
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def start_local(home: Path) -> Local:
    """`scalebox local up` in `home` on free ports; its endpoints. This process's SCALEBOX_HOME becomes
    `home` too (the broker is found, measured, stopped and started from here)."""
    os.environ["SCALEBOX_HOME"] = str(home)
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()), "--pg-port", str(free_port()),
             "--internal-port", str(free_port())]
    proc = Local(home, "", "").scalebox(["local", "up", *ports], services=False)
    if proc.returncode != 0:
        raise RuntimeError(f"local up failed:\n{proc.stderr}")
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    local = Local(home, lines["kafka bootstrap"].strip(), lines["postgres dsn"].strip())
    ok(local.scalebox(["projector", "--until-caught-up"]), "projector")  # the projection's tables
    return local


@contextlib.contextmanager
def own_services(kind: str, keep: bool = False) -> Iterator[Local]:
    """Services of the benchmark's own in a fresh SCALEBOX_HOME, stopped (`local down`) and deleted on the way
    out, however the run ends; with `keep`, the home stays (its path is printed)."""
    home = share_kafka_jars(Path(tempfile.mkdtemp(prefix=f"sbx-bench-{kind}-")))
    say(f"services of their own in {home}")
    local = Local(home, "", "")
    try:
        local = start_local(home)
        yield local
    finally:
        down = local.scalebox(["local", "down"], services=False)
        if down.returncode != 0:
            say(f"local down failed ({down.returncode}): {down.stderr[-500:]}")
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def parse_deadline(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """'HH:MM' (UTC, today) -> that moment; None for None. Raises ValueError if it has already passed."""
    if text is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    hours, minutes = (int(x) for x in text.split(":"))
    when = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if when <= now:
        raise ValueError(f"deadline {text} UTC has already passed")
    return when


def seconds_left(deadline: dt.datetime | None) -> float | None:
    """Seconds until the deadline (<= 0 once it passed); None without one."""
    return None if deadline is None else (deadline - dt.datetime.now(dt.UTC)).total_seconds()


def past(deadline: dt.datetime | None) -> bool:
    """True once the deadline has passed."""
    left = seconds_left(deadline)
    return left is not None and left <= 0
