"""`scalebox local up --secure` in a home of its own, on ports of its own: credentials made with mode 600 under
the home, Kafka refuses a client without them, PostgreSQL refuses a connection without the password, and the
README's `scalebox run` works unchanged, picking the credentials up by itself."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from pipeline import REPO, free_port

pytestmark = pytest.mark.integration


def _sbx(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEBOX_KAFKA", "SCALEBOX_PG"))}
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**env, "SCALEBOX_HOME": str(home)}, cwd=REPO)


def _private(path: Path) -> bool:
    return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def test_the_secure_local_pair_runs_primes_and_refuses_strangers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()),
             "--internal-port", str(free_port()), "--pg-port", str(free_port())]
    up = _sbx(["local", "up", "--secure", *ports], home)
    assert up.returncode == 0, up.stderr
    try:
        bootstrap, dsn = (line.split()[-1] for line in up.stdout.splitlines()[:2])
        secrets = [home / "credentials" / name for name in ("kafka.password", "postgres.password", "pgpass")]
        assert all(p.is_file() and _private(p) for p in [*secrets, home / "kafka-client.properties"])
        assert all(_private(d) for d in (home / "credentials", home / "tls"))
        passwords = [(home / "credentials" / n).read_text().strip() for n in ("kafka.password", "postgres.password")]
        assert not any(p in up.stdout + up.stderr for p in passwords), "a password was printed"

        stranger = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        with pytest.raises(Exception):  # noqa: B017 - any refusal: the broker answers no unauthenticated client
            stranger.list_topics(timeout=5)
        no_password = dsn.split("?", 1)[0]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(no_password, connect_timeout=5, passfile="/dev/null")

        run = _sbx(["run", str(REPO / "examples/primes/app-process.yaml"), "1000"], home)
        assert run.returncode == 0, run.stderr
        tasks = json.loads(_sbx(["task", "list", "--app", "primes", "--module", "calc", "--json"], home).stdout)
        assert sum(int(t["custom_out"]) for t in tasks) == 168
        shown = _sbx(["local", "status", "--json"], home).stdout
        assert not any(p in run.stdout + run.stderr + shown for p in passwords)
    finally:
        _sbx(["local", "down"], home)
