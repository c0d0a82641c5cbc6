"""When a state owner stops by itself: the cluster watch (another cluster id, no answer for long, its apps ended)
over a fake admin, and the standing owner's record of the apps it serves (files only)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from scalebox_stream.launch import state_service
from scalebox_stream.state.service import ClusterWatch


class FakeAdmin:
    """Answers `list_topics` with the next cluster id of a script (None: no broker answers)."""

    def __init__(self, ids: list[str | None]) -> None:
        self.ids = ids

    def list_topics(self, timeout: float) -> object:
        cluster_id = self.ids.pop(0) if len(self.ids) > 1 else self.ids[0]
        if cluster_id is None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
        return type("Metadata", (), {"cluster_id": cluster_id})()


def test_another_cluster_id_at_the_address_ends_the_owner() -> None:
    watch, admin = ClusterWatch("b:9092", threading.Event()), FakeAdmin(["c1", None, "c1", "c2"])
    last = time.monotonic()
    for _ in range(3):
        reason, last = watch.check(admin, last)
        assert reason is None
    reason, _ = watch.check(admin, last)
    assert reason is not None and "another one now (c2, was c1)" in reason


def test_no_answer_ends_the_owner_only_after_the_bound() -> None:
    admin = FakeAdmin([None])
    assert ClusterWatch("b:9092", threading.Event()).check(admin, time.monotonic() - 3600)[0] is None
    watch = ClusterWatch("b:9092", threading.Event(), unreachable_s=10)
    assert watch.check(admin, time.monotonic() - 5)[0] is None
    reason, _ = watch.check(admin, time.monotonic() - 11)
    assert reason is not None and "answered for 10 s" in reason


def test_an_answer_resets_the_unreachable_clock_and_needed_is_asked() -> None:
    needed = [True]
    watch = ClusterWatch("b:9092", threading.Event(), unreachable_s=10, needed=lambda: needed[0])
    reason, last = watch.check(FakeAdmin(["c1"]), time.monotonic() - 11)
    assert reason is None and time.monotonic() - last < 1
    needed[0] = False
    assert watch.check(FakeAdmin(["c1"]), last)[0] == "the apps it served have ended"


def test_the_watch_thread_sets_stop_with_its_reason() -> None:
    stop = threading.Event()
    watch = ClusterWatch("127.0.0.1:1", stop, needed=lambda: False, every_s=0.05)
    watch.start()
    assert stop.wait(10) and watch.reason == "the apps it served have ended"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", "sbx.unit.state")
    return tmp_path


def write_record(home: Path, pid: int, apps: dict[str, float]) -> Path:
    path = state_service._record(home, "k:1", "sbx.unit.state")
    path.write_text(json.dumps({"pid": pid, "kafka": "k:1", "prefix": "sbx.unit.state", "apps": apps}))
    return path


def test_still_serving_while_an_app_has_a_live_server_or_was_just_added(home: Path) -> None:
    path = write_record(home, os.getpid(), {"old": time.time() - 3600, "new": time.time()})
    assert state_service.still_serving(home, "k:1", os.getpid(), apps_grace_s=60)
    write_record(home, os.getpid(), {"old": time.time() - 3600})
    server = subprocess.Popen(["sleep", "60"])
    try:
        (home / "apps" / "old").mkdir(parents=True)
        (home / "apps" / "old" / "serve.pid").write_text(str(server.pid))
        assert state_service.still_serving(home, "k:1", os.getpid(), apps_grace_s=60)
    finally:
        server.kill()
        server.wait()
    assert path.exists()


def test_not_serving_once_every_app_ended_and_the_record_goes(home: Path) -> None:
    path = write_record(home, os.getpid(), {"old": time.time() - 3600})
    assert not state_service.still_serving(home, "k:1", os.getpid(), apps_grace_s=60)
    assert not path.exists()


def test_a_record_of_another_owner_means_this_one_is_not_needed(home: Path) -> None:
    path = write_record(home, os.getpid() + 1, {"new": time.time()})
    assert not state_service.still_serving(home, "k:1", os.getpid(), apps_grace_s=60)
    assert path.exists(), "the other owner's record stays"
