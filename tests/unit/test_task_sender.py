"""`TaskSender`: the CLI's TaskCreated records, on the module's topic and on the events topic, commit in one
Kafka transaction or are aborted together (against an in-memory fake producer)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaException

from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import admin_config, reader_config
from scalebox_stream.kafka.task_publisher import TaskSender
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic


class FakeProducer:
    """Records produce calls and transaction steps; `fail_on` makes one step raise as librdkafka would."""

    def __init__(self, config: dict[str, Any], fail_on: str = "") -> None:
        self.config, self.fail_on = config, fail_on
        self.steps: list[str] = []
        self.records: list[tuple[str, str, bytes]] = []

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name == self.fail_on:
            raise KafkaException(f"{name} failed")

    def init_transactions(self, timeout: float) -> None:
        self._step("init")

    def begin_transaction(self) -> None:
        self._step("begin")

    def commit_transaction(self, timeout: float) -> None:
        self._step("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._step("abort")

    def produce(self, topic: str, key: str, value: bytes) -> None:
        self._step("produce")
        self.records.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0


def _sender(fail_on: str = "") -> tuple[TaskSender, FakeProducer]:
    made: list[FakeProducer] = []

    def make(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config, fail_on))
        return made[-1]

    sender = TaskSender("kafka:9092", timeout_s=5, make_producer=make)  # type: ignore[arg-type]
    return sender, made[0]


def test_tasks_go_to_both_topics_in_one_transaction() -> None:
    sender, producer = _sender()
    assert producer.config["transactional.id"].startswith("sbx.cli.")
    ids = sender.send("app", [("m", "one"), ("m", "two")], {"h": "1"})
    assert producer.steps == ["init", "begin"] + ["produce"] * 4 + ["commit"]
    topics = [(topic, key) for topic, key, _ in producer.records]
    assert topics == [(task_topic("app", "m"), ids[0]), (EVENTS_TOPIC, ids[0]),
                      (task_topic("app", "m"), ids[1]), (EVENTS_TOPIC, ids[1])]
    event = EventCodec().decode(producer.records[0][2])
    assert event.event_type == "TaskCreated" and event.payload["body"] == "one" and event.producer == "cli"
    assert producer.records[0][2] == producer.records[1][2], "the same record on both topics"


def test_a_failed_commit_is_an_error_that_says_so() -> None:
    sender, producer = _sender(fail_on="commit")
    with pytest.raises(RuntimeError, match="Kafka did not commit the transaction"):
        sender.send("app", [("m", "one")])


def test_a_failure_while_producing_aborts_the_whole_transaction() -> None:
    sender, producer = _sender(fail_on="produce")
    with pytest.raises(KafkaException):
        sender.send("app", [("m", "one"), ("m", "two")])
    assert producer.steps[-1] == "abort" and "commit" not in producer.steps


def test_an_event_goes_alone_in_a_transaction_keyed_by_its_app() -> None:
    sender, producer = _sender()
    sender.send_event(Event("AppFinished", "app", {"succeeded": 1, "failed": 0}, producer="cli"))
    assert producer.steps == ["init", "begin", "produce", "commit"]
    assert producer.records[0][:2] == (EVENTS_TOPIC, "app")


def test_side_readers_never_commit_and_never_share_a_group() -> None:
    first, second = reader_config("k:1", "lookup"), reader_config("k:1", "lookup")
    assert first["enable.auto.commit"] is False and first["bootstrap.servers"] == "k:1"
    assert first["group.id"].startswith("sbx.lookup.") and first["group.id"] != second["group.id"]
    assert reader_config("k:1", "backlog", group_id="sbx.app.m")["group.id"] == "sbx.app.m"
    assert reader_config("k:1", "control", log_level=3)["log_level"] == 3
    assert admin_config("k:1", log_level=0) == {"bootstrap.servers": "k:1", "log_level": 0}
