"""The standing state owner (`app create` starts it) stops with what it serves: once none of its apps has a live
server, when another cluster answers at its Kafka address (a new broker on the same port), or when no broker has
answered for a bounded time. On a broker of the test's own (`private_kafka`): the shared one is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_kafka import PrivateKafka, running

from scalebox_stream.launch.state_service import _record, ensure_state_service, stop_state_service
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE, StateTopics


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    with running(tmp_path_factory.mktemp("state-service") / "kafka") as kafka:
        yield kafka


@pytest.fixture
def home(broker: PrivateKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Scalebox home of the test's own, the broker running; the service owner stopped after."""
    if broker.process is None or broker.process.poll() is not None:
        broker.start()
    monkeypatch.setenv("SCALEBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", f"sbx.test.svc{uuid.uuid4().hex[:6]}")
    yield tmp_path / "home"
    stop_state_service(tmp_path / "home", broker.bootstrap)


def alive(pid: int) -> bool:
    """Whether the process runs (an exited child not yet reaped is a zombie: not alive)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout_s: float, log: Path) -> float:
    started = time.monotonic()
    while alive(pid):
        assert time.monotonic() - started < timeout_s, f"the owner still runs:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return time.monotonic() - started


def fake_server(home: Path, app: str) -> subprocess.Popen:
    """A live process as the app's server (`app serve` keeps its pid in apps/<app>/serve.pid)."""
    server = subprocess.Popen(["sleep", "600"])
    (home / "apps" / app).mkdir(parents=True)
    (home / "apps" / app / "serve.pid").write_text(str(server.pid))
    return server


def owner_log(home: Path) -> Path:
    return next((home / "logs").glob("state-owner-*.log"))


def test_the_standing_owner_serves_until_its_apps_end(broker: PrivateKafka, home: Path) -> None:
    first, second = fake_server(home, "a1"), fake_server(home, "a2")
    pid = ensure_state_service(home, broker.bootstrap, "a1", apps_grace_s=1, check_s=0.5)
    assert ensure_state_service(home, broker.bootstrap, "a2", apps_grace_s=1, check_s=0.5) == pid
    record = _record(home, broker.bootstrap, os.environ["SCALEBOX_STATE_PREFIX"])
    assert set(json.loads(record.read_text())["apps"]) == {"a1", "a2"}
    with StateClient(broker.bootstrap, StateTopics.from_env(), timeout_s=60) as client:
        reply = client.call(client.command("add", SEMAPHORE, "a1", "s", n=2, auto_create=True))
    assert (reply.code, reply.value) == (OK, 2)
    first.kill()
    first.wait()
    time.sleep(3)
    assert alive(pid), "one app still runs: the owner serves on"
    second.kill()
    second.wait()
    wait_gone(pid, 30, owner_log(home))
    assert not record.exists(), "the record went with the owner"
    assert "the apps it served have ended" in owner_log(home).read_text()
    assert ensure_state_service(home, broker.bootstrap, "a3", apps_grace_s=1) != pid, "the next app gets a new one"


def test_the_standing_owner_stops_when_another_cluster_answers(broker: PrivateKafka, home: Path) -> None:
    server = fake_server(home, "a1")
    try:
        pid = ensure_state_service(home, broker.bootstrap, "a1", check_s=0.5)
        with StateClient(broker.bootstrap, StateTopics.from_env(), timeout_s=60) as client:
            assert client.call(client.command("add", SEMAPHORE, "a1", "s", n=1, auto_create=True)).code == OK
        broker.wipe()
        broker.start()
        wait_gone(pid, 60, owner_log(home))
        assert "is another one now" in owner_log(home).read_text()
    finally:
        server.kill()
        server.wait()


def test_the_standing_owner_stops_when_no_broker_answers_for_long(broker: PrivateKafka, home: Path) -> None:
    server = fake_server(home, "a1")
    try:
        pid = ensure_state_service(home, broker.bootstrap, "a1", unreachable_s=3, check_s=0.5)
        with StateClient(broker.bootstrap, StateTopics.from_env(), timeout_s=60) as client:
            assert client.call(client.command("add", SEMAPHORE, "a1", "s", n=1, auto_create=True)).code == OK
        broker.stop()
        wait_gone(pid, 60, owner_log(home))
        assert "answered for 3 s" in owner_log(home).read_text()
    finally:
        server.kill()
        server.wait()
