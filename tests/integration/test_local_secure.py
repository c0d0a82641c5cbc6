"""`scalebox local up` (secure by default) in a home of its own, on ports of its own: credentials made with mode
600 under the home, Kafka refuses a client without them, PostgreSQL refuses a connection without the password,
and the README's `scalebox run` and `scalebox local repair` work unchanged, picking the credentials up by
themselves. A home made without authentication (before the secure default) is upgraded on its next start,
keeping its data; while it still runs so, `up` says what to do."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from pipeline import REPO, free_port
from support.homes import share_kafka_jars

from scalebox_stream.kafka.security import client_security

pytestmark = pytest.mark.integration


def _sbx(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALEBOX_KAFKA", "SCALEBOX_PG"))}
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**env, "SCALEBOX_HOME": str(home)}, cwd=REPO)


def _private(path: Path) -> bool:
    return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def _ports() -> list[str]:
    return ["--kafka-port", str(free_port()), "--controller-port", str(free_port()),
            "--internal-port", str(free_port()), "--pg-port", str(free_port())]


def test_the_secure_local_pair_runs_primes_and_refuses_strangers(tmp_path: Path) -> None:
    home = share_kafka_jars(tmp_path / "home")
    up = _sbx(["local", "up", *_ports()], home)
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
        repair = _sbx(["local", "repair"], home)  # Kafka's own admin tool, as the local admin by certificate
        assert repair.returncode == 0 and repair.stdout.strip().endswith("hanging transaction(s) aborted"), \
            repair.stderr
    finally:
        _sbx(["local", "down"], home)


def test_a_home_made_without_authentication_is_upgraded_on_its_next_start(tmp_path: Path) -> None:
    home, topic = share_kafka_jars(tmp_path / "home"), f"test-local-{uuid.uuid4().hex[:12]}"
    up = _sbx(["local", "up", "--insecure", *_ports()], home)
    assert up.returncode == 0, up.stderr
    try:
        bootstrap, dsn = (line.split()[-1] for line in up.stdout.splitlines()[:2])
        assert not (home / "kafka-client.properties").exists()
        plain = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        plain.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        again = _sbx(["local", "up"], home)  # --insecure is remembered: no note
        assert again.returncode == 0 and "note:" not in again.stderr, again.stderr

        state = json.loads((home / "local.json").read_text())
        state.pop("insecure")  # as a home made before the secure default
        (home / "local.json").write_text(json.dumps(state))
        noted = _sbx(["local", "up"], home)
        assert noted.returncode == 0 and noted.stdout.splitlines()[:2] == up.stdout.splitlines()[:2], noted.stderr
        assert "run(s) without authentication" in noted.stderr and "scalebox local down && scalebox local up" \
            in noted.stderr, noted.stderr

        assert _sbx(["local", "down"], home).returncode == 0
        upgraded = _sbx(["local", "up"], home)
        assert upgraded.returncode == 0 and "note:" not in upgraded.stderr, upgraded.stderr
        secured_dsn = upgraded.stdout.splitlines()[1].split()[-1]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, connect_timeout=5, passfile="/dev/null")
        with psycopg.connect(secured_dsn) as conn:
            assert conn.execute("SELECT to_regclass('kept')").fetchone() == ("kept",)
        with pytest.raises(Exception):  # noqa: B017 - any refusal: the broker answers no unauthenticated client
            AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=5)
        client = {"bootstrap.servers": bootstrap, **client_security(bootstrap, {"SCALEBOX_HOME": str(home)})}
        assert topic in AdminClient(client).list_topics(timeout=30).topics
    finally:
        _sbx(["local", "down"], home)
