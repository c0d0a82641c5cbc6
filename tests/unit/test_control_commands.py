"""Commands for a module's agents are one record on the control topic, whoever sends them."""

from __future__ import annotations

import json

import pytest

from scalebox_stream.kafka.control import Command, encode_command, send_command
from scalebox_stream.kafka.topics import CONTROL_TOPIC


class _Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes]] = []

    def produce(self, topic: str, key: str, value: bytes) -> None:
        self.records.append((topic, key, value))


def test_a_command_is_keyed_by_app_and_module():
    topic, key, value = encode_command(Command("app", "m", "suspend", "why"))
    assert (topic, key) == (CONTROL_TOPIC, "app/m")
    assert json.loads(value) == {"command": "suspend", "reason": "why"}


def test_the_cli_sends_the_same_record_an_agent_would_queue():
    producer = _Producer()
    command = Command("app", "m", "resume")
    send_command(producer, command)
    assert producer.records == [encode_command(command)]


def test_an_unknown_command_is_refused():
    with pytest.raises(ValueError, match="unknown command"):
        encode_command(Command("app", "m", "restart"))
