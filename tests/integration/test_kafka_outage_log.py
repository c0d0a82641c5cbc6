"""A broker that goes away and comes back reads as a few lines in a process's log, not hundreds: one when it
becomes unreachable, one when it is back (`kafka.client_log`, `policy.kafka_log`), whatever its clients retried in
between. Real clients made by `kafka.config` against a broker of the test's own, stopped and started again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from private_kafka import PrivateKafka

from scalebox_stream.kafka import client_log
from scalebox_stream.kafka.config import consumer_config, producer_config


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())


@pytest.fixture
def said() -> Iterator[list[str]]:
    """What the process's gate logs."""
    handler, logger = Lines(), client_log.GATE.logger
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.said
    logger.removeHandler(handler)
    logger.setLevel(level)


def _serve(clients: tuple[Producer, Consumer], seconds: float) -> None:
    """Poll both clients (their log lines and errors are delivered from poll) for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        clients[0].poll(0.05)
        clients[1].poll(0.05)


def test_a_broker_restart_is_two_lines_in_the_log(tmp_path: Path, said: list[str]) -> None:
    broker = PrivateKafka(tmp_path / "kafka").start()
    try:
        clients = (Producer(producer_config(broker.bootstrap)), Consumer(consumer_config(broker.bootstrap, "g")))
        clients[1].subscribe(["outage-log"])
        _serve(clients, 2)
        broker.stop()
        _serve(clients, 3)
        down = [line for line in said if "unreachable" in line]
        assert len(down) == 1 and down[0].startswith(f"Kafka broker {broker.bootstrap} unreachable ("), said
        broker.start()
        deadline = time.monotonic() + 30
        while not any("reachable again" in line for line in said) and time.monotonic() < deadline:
            _serve(clients, 0.5)
        back = [line for line in said if "reachable again" in line]
        assert len(back) == 1 and back[0].startswith(f"Kafka broker {broker.bootstrap} reachable again after"), said
        attempts = int(back[0].split(" (", 1)[1].split(" failed", 1)[0])
        assert attempts >= 5, f"the clients retried: {back[0]}"
        assert len([line for line in said if "unreachable" in line]) == 1, said
        assert len(said) <= 12, f"a few lines, not one per retry: {said}"
        clients[0].flush(1)
        clients[1].close()
    finally:
        broker.kill()
