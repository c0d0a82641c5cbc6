"""The host directory reads agents' presence records from the real presence topic."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka import presence
from scalebox_stream.kafka.config import producer_config
from scalebox_stream.kafka.presence import HostDirectory
from scalebox_stream.kafka.topics import PRESENCE_TOPIC


def _record(producer: Producer, agent: str, app: str, module: str, host: str, state: str, age_s: float = 0) -> None:
    event = Event("AgentLifecycle", app, {"agent": agent, "state": state, "slots": 1, "executor": "process",
                                          "pid": 1}, module=module, host=host, producer=agent,
                  occurred_at=int((time.time() - age_s) * 1e6))
    producer.produce(PRESENCE_TOPIC, key=agent, value=EventCodec().encode(event))
    producer.flush(10)


def test_directory_follows_agents_starting_stopping_and_going_silent(kafka_bootstrap, monkeypatch):
    monkeypatch.setattr(presence, "CACHE_SECONDS", 0.0)
    app, producer = f"sbx-test-presence-{uuid.uuid4().hex[:8]}", Producer(producer_config(kafka_bootstrap))
    directory = HostDirectory(kafka_bootstrap)
    try:
        assert not directory.serves(app, "m", "h1")  # reads the whole topic once, to its end
        _record(producer, f"{app}-h2", app, "m", "h2", "heartbeat", age_s=presence.PRESENCE_TTL_S + 5)
        _record(producer, f"{app}-h3", app, "other", "h3", "started")
        _record(producer, f"{app}-h4", app, "m", "h4", "started")
        _record(producer, f"{app}-h4", app, "m", "h4", "stopped")
        _record(producer, f"{app}-h1", app, "m", "h1", "started")  # last: once it is seen, all the above are
        deadline = time.monotonic() + 10
        while not directory.serves(app, "m", "h1") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert directory.serves(app, "m", "h1")
        assert not directory.serves(app, "m", "h2"), "silent for longer than the TTL"
        assert not directory.serves(app, "m", "h3"), "an agent of another module"
        assert not directory.serves(app, "m", "h4"), "stopped"
        assert HostDirectory(kafka_bootstrap).serves(app, "m", "h1"), "a new reader catches up from the start"
        _record(producer, f"{app}-h1", app, "m", "h1", "stopped")
        deadline = time.monotonic() + 10
        while directory.serves(app, "m", "h1") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not directory.serves(app, "m", "h1")
    finally:
        directory.close()
