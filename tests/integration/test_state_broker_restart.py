"""A broker restart in the middle of 2,000 concurrent increment-n calls loses nothing and repeats nothing.

The test starts a single-node Kafka of its own (a private Scalebox home, free ports, the shared home's jars) and
restarts that one: the shared broker other test sessions use is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from pipeline import REPO, free_port
from state_support import CALLS, OwnerProcess, assert_exact, hammer, private_topics

from scalebox_stream.local.home import scalebox_home


class PrivateKafka:
    """A broker in a Scalebox home of its own, started and stopped through `scalebox_stream.local.kafka`."""

    def __init__(self, home: Path) -> None:
        self.home, self.port, self.controller_port = home, free_port(), free_port()
        lib = scalebox_home() / "kafka" / "lib"
        (home / "kafka").mkdir(parents=True)
        if lib.is_dir():
            (home / "kafka" / "lib").symlink_to(lib)  # no second download of the jars

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, code: str) -> None:
        done = subprocess.run([sys.executable, "-c", f"from scalebox_stream.local import kafka; {code}"],
                              env={**os.environ, "SCALEBOX_HOME": str(self.home)}, cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    def start(self) -> None:
        self._call(f"kafka.start({self.port}, {self.controller_port})")

    def stop(self) -> None:
        self._call("kafka.stop(grace=60)")


@pytest.fixture
def private_kafka(tmp_path: Path):
    broker = PrivateKafka(tmp_path / "home")
    try:
        broker.start()
    except AssertionError as exc:
        pytest.skip(f"cannot start a private broker: {exc}")
    yield broker
    broker.stop()


def test_a_broker_restart_mid_run_loses_nothing(private_kafka: PrivateKafka, tmp_path: Path) -> None:
    kafka = private_kafka.bootstrap
    topics = private_topics(kafka)
    owner = OwnerProcess(kafka, topics, "o1", tmp_path).start(timeout_s=120)
    app, progress, outcome = f"t{uuid.uuid4().hex[:6]}", [0], {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "results", hammer(kafka, topics, app, "sum_value", progress, timeout_s=300)))
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while progress[0] < CALLS // 3 and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert runner.is_alive(), "the run ended before the broker could be restarted"
        private_kafka.stop()
        stopped_at = progress[0]
        time.sleep(1)
        private_kafka.start()
        runner.join(600)
        assert "results" in outcome, f"the clients failed; owner log:\n{owner.log.read_text()[-3000:]}"
        assert stopped_at < CALLS, "the broker went down mid-run"
        assert_exact(kafka, topics, app, "sum_value", outcome["results"])
        assert owner.process is not None and owner.process.poll() is None, "the owner survived the restart"
    finally:
        owner.stop()
