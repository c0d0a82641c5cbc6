"""A broker restart in the middle of concurrent increment-n calls loses nothing and repeats nothing.

The test runs a single-node Kafka of its own (`private_kafka`) and restarts that one: the shared broker other test
sessions use is never touched.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from private_kafka import PrivateKafka
from state_support import OwnerProcess, assert_exact, hammer, private_topics, replies_by_id

CALLS = 800


@pytest.fixture
def private_kafka(tmp_path: Path):
    broker = PrivateKafka(tmp_path / "kafka").start()
    yield broker
    broker.kill()


def test_a_broker_restart_mid_run_loses_nothing(private_kafka: PrivateKafka, tmp_path: Path) -> None:
    kafka = private_kafka.bootstrap
    topics = private_topics(kafka)
    owner = OwnerProcess(kafka, topics, "o1", tmp_path).start(timeout_s=120)
    app, progress, outcome = f"t{uuid.uuid4().hex[:6]}", [0], {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "results", hammer(kafka, topics, app, "sum_value", progress, timeout_s=120, calls=CALLS)))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while progress[0] < CALLS // 3 and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert runner.is_alive(), "the run ended before the broker could be restarted"
        private_kafka.stop()
        stopped_at = progress[0]
        private_kafka.start()
        runner.join(180)
        assert "results" in outcome, f"the clients failed; owner log:\n{owner.log.read_text()[-6000:]}"
        assert stopped_at < CALLS, "the broker went down mid-run"
        replies = replies_by_id(kafka, topics)
        assert len(replies) == CALLS, "one reply per request id (resends answered under the same id)"
        for rid, answers in replies.items():
            assert len({(r["code"], r["value"]) for r in answers}) == 1, f"{rid} answered differently: {answers}"
        assert_exact(kafka, topics, app, "sum_value", outcome["results"], calls=CALLS)
        assert owner.process is not None and owner.process.poll() is None, "the owner survived the restart"
    finally:
        owner.stop()
