"""A Kafka with SCRAM-SHA-512 over TLS and ACLs (one broker for this module, `secure_kafka`): pipelines run on
it with each role's own credentials; a wrong password, an untrusted certificate or a missing ACL is refused
with a plain error and loses nothing; a client without credentials reads no task and registers no app."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import secure_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from pipeline import REPO

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.topics import APPS_TOPIC, EVENTS_TOPIC, task_topic
from scalebox_stream.local import tls

pytestmark = pytest.mark.integration

EXPECTED_PRIMES = 168


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secure_kafka.SecureKafka]:
    cluster = secure_kafka.start(tmp_path_factory.mktemp("secure-kafka"))
    try:
        cluster.add_user("operator", "operator")
        cluster.add_user("projector", "projector")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def secure_pg(pg_dsn: str) -> Iterator[str]:
    """A database of its own on the test PostgreSQL: this cluster's projection must not mix with the shared one."""
    name = f"sbx_secure_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _cli(args: list[str], env: dict[str, str], pg: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**env, "SCALEBOX_PG": pg}, cwd=REPO)


def _app(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodules:\n  m:\n    executor: process\n"
                    f"    command: [/bin/sh, -c, 'echo \"done $0\" > \"$WORK_DIR/custom-out.txt\"']\n")
    return path


def _events(secure: secure_kafka.SecureKafka, app: str, kind: str, count: int, timeout_s: float = 90) -> list:
    """The first `count` events of `kind` of `app` (read by the admin), waiting up to `timeout_s`."""
    consumer = Consumer({**secure.admin_config(), "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    partitions = consumer.list_topics(EVENTS_TOPIC, timeout=10).topics[EVENTS_TOPIC].partitions
    consumer.assign([TopicPartition(EVENTS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
    codec, found, deadline = EventCodec(), [], time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    event = codec.decode(message.value())
                    if event.app == app and event.event_type == kind:
                        found.append(event)
    finally:
        consumer.close()
    return found


def test_primes_runs_end_to_end_on_the_secured_cluster(secure, secure_pg) -> None:
    env = secure.client_env("operator")
    result = _cli(["run", str(REPO / "examples/primes/app-process.yaml"), "1000"], env, secure_pg, timeout=300)
    assert result.returncode == 0, result.stderr
    tasks = json.loads(_cli(["task", "list", "--app", "primes", "--module", "calc", "--json"], env,
                            secure_pg).stdout)
    assert sum(int(t["custom_out"]) for t in tasks) == EXPECTED_PRIMES
    assert secure.passwords["operator"].read_text().strip() not in result.stdout + result.stderr


def test_each_role_runs_with_only_its_own_acls(secure, secure_pg, tmp_path, monkeypatch) -> None:
    """The operator registers the app and adds a task; an agent with the agent role of this app runs it; the
    projector with its role projects it; and an agent of another app may not touch it: refused plainly, and
    the task stays for the right agent."""
    app, other = f"sec-{uuid.uuid4().hex[:6]}", f"sec-{uuid.uuid4().hex[:6]}"
    secure.add_user(f"agent-{app}", "agent", app)
    secure.add_user(f"agent-{other}", "agent", other)
    app_file = _app(tmp_path, app)
    operator = secure.client_env("operator")
    deploy = _cli(["task", "add", "--app", app, "--module", "m", "first"], operator, secure_pg)
    assert deploy.returncode == 2 and "deployed" in deploy.stderr  # not deployed yet: run deploys

    from scalebox_stream.launch.deploy import deploy as deploy_app
    from scalebox_stream.spec import load_app

    for key, value in operator.items():
        monkeypatch.setenv(key, value)
    deploy_app(load_app(app_file, ()), (), secure.bootstrap, secure_pg)
    added = _cli(["task", "add", "--app", app, "--module", "m", "first"], operator, secure_pg)
    assert added.returncode == 0, added.stderr

    intruder = _cli(["agent", "--app", app, "--module", "m", "--app-file", str(app_file)],
                    secure.client_env(f"agent-{other}"), secure_pg, timeout=120)
    assert intruder.returncode != 0
    assert f"user agent-{other}" in intruder.stderr and "not authorized" in intruder.stderr, intruder.stderr[-3000:]
    assert "Traceback" not in intruder.stderr

    pinned = _cli(["agent", "--app", app, "--module", "m", "--app-sha256", "0" * 64],
                  secure.client_env(f"agent-{app}"), secure_pg, timeout=120)
    assert pinned.returncode == 2 and "not the pinned" in pinned.stderr, pinned.stderr[-2000:]

    sha = hashlib.sha256(app_file.read_bytes()).hexdigest()
    agent = subprocess.Popen([sys.executable, "-m", "scalebox_stream.cli.main", "agent", "--app", app, "--module",
                              "m", "--app-sha256", sha],
                             env={**secure.client_env(f"agent-{app}"), "SCALEBOX_PG": secure_pg},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        finished = _events(secure, app, "TaskFinished", 1)
    finally:
        agent.terminate()
        _, agent_err = agent.communicate(timeout=60)
    assert len(finished) == 1, agent_err[-3000:]
    projected = _cli(["projector", "--until-caught-up"], secure.client_env("projector"), secure_pg)
    assert projected.returncode == 0, projected.stderr
    tasks = json.loads(_cli(["task", "list", "--app", app, "--json"], operator, secure_pg).stdout)
    assert [(t["body"], t["status"], t["custom_out"].strip()) for t in tasks] == [("first", "succeeded",
                                                                                   "done first")]


def test_a_wrong_password_or_an_untrusted_certificate_is_refused_plainly(secure, secure_pg, tmp_path) -> None:
    wrong = tls.write_private(tmp_path / "wrong.password", "not-the-password\n")
    refused = _cli(["task", "add", "--app", "x", "--module", "m", "b"], secure.client_env("operator", wrong),
                   secure_pg)
    assert refused.returncode != 0
    assert "Kafka authentication failed for user operator" in refused.stderr, refused.stderr
    other_ca = tls.make_ca(tmp_path / "other-ca", "Someone else's CA")
    untrusted = _cli(["task", "add", "--app", "x", "--module", "m", "b"],
                     secure.client_env("operator", ca=other_ca.cert), secure_pg)
    assert untrusted.returncode != 0 and "certificate not trusted" in untrusted.stderr, untrusted.stderr
    for result in (refused, untrusted):
        assert "Traceback" not in result.stderr
        assert secure.passwords["operator"].read_text().strip() not in result.stderr


def test_without_credentials_no_task_is_read_and_no_app_registered(secure, secure_pg, tmp_path) -> None:
    app = f"sec-{uuid.uuid4().hex[:6]}"
    env = secure.client_env(None)
    probe = _cli(["agent", "--app", app, "--module", "m", "--app-file", str(_app(tmp_path, app))], env, secure_pg,
                 timeout=60)
    assert probe.returncode != 0 and "SCALEBOX_KAFKA_CONFIG" in probe.stderr, probe.stderr

    plain = {"bootstrap.servers": secure.bootstrap, "log_level": 0}
    consumer = Consumer({**plain, "group.id": f"t-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(task_topic("primes", "calc"), 0, OFFSET_BEGINNING)])
    try:
        assert [m for m in consumer.consume(10, timeout=3) if m.error() is None] == []
    finally:
        consumer.close()
    anonymous: list = []
    producer = Producer({**plain, "message.timeout.ms": 3000})
    producer.produce(APPS_TOPIC, key=app, value=json.dumps({"source": "/tmp/evil.yaml"}).encode(),
                     on_delivery=lambda err, _msg: anonymous.append(err))
    producer.flush(10)
    assert anonymous and anonymous[0] is not None, "the record was not acknowledged"

    # An authenticated user without the operator role may not register an app either.
    secure.add_user(f"agent-{app}", "agent", app)
    delivered: list = []
    agent = Producer(secure.client_config(f"agent-{app}", log_level=0))
    agent.produce(APPS_TOPIC, key=app, value=b'{"source": "/tmp/evil.yaml"}',
                  on_delivery=lambda err, _msg: delivered.append(err))
    agent.flush(30)
    assert delivered and delivered[0] is not None and delivered[0].name() == "TOPIC_AUTHORIZATION_FAILED"

    consumer = Consumer({**secure.admin_config(), "group.id": f"t-{uuid.uuid4().hex}", "enable.partition.eof": True})
    consumer.assign([TopicPartition(APPS_TOPIC, 0, OFFSET_BEGINNING)])
    keys = []
    try:
        while (message := consumer.poll(5)) is not None and message.error() is None:
            keys.append(message.key())
    finally:
        consumer.close()
    assert app.encode() not in keys
