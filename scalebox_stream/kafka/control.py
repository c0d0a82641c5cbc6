"""The `sbx.control` topic: commands to every agent of a module (suspend, resume)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from scalebox_stream.kafka.config import reader_config
from scalebox_stream.kafka.topics import CONTROL_TOPIC

COMMANDS = ("suspend", "resume")


@dataclass(frozen=True)
class Command:
    """One command for the agents of one module."""

    app: str
    module: str
    command: str
    reason: str = ""


def encode_command(command: Command) -> tuple[str, str, bytes]:
    """The record (topic, key, value) that carries a command: sent alone by the CLI, or by an agent in one of
    its transactions."""
    if command.command not in COMMANDS:
        raise ValueError(f"unknown command {command.command!r} (known: {', '.join(COMMANDS)})")
    value = json.dumps({"command": command.command, "reason": command.reason})
    return CONTROL_TOPIC, f"{command.app}/{command.module}", value.encode()


def send_command(producer: Producer, command: Command) -> None:
    """Publish a command (the caller flushes)."""
    topic, key, value = encode_command(command)
    producer.produce(topic, key=key, value=value)


class CommandListener:
    """Reads the commands for one module published from now on (never blocks)."""

    def __init__(self, bootstrap: str, app: str, module: str) -> None:
        self.key = f"{app}/{module}".encode()
        self.consumer = Consumer(reader_config(bootstrap, "control", log_level=3))
        self.consumer.assign([TopicPartition(CONTROL_TOPIC, 0, OFFSET_END)])

    def poll(self) -> list[Command]:
        """Commands that arrived since the last call."""
        commands = []
        for message in self.consumer.consume(100, timeout=0):
            if message.error() or message.key() != self.key:
                continue
            try:
                data = json.loads(message.value())
                app, module = self.key.decode().split("/", 1)
                commands.append(Command(app, module, data["command"], data.get("reason", "")))
            except (ValueError, KeyError):
                continue
        return commands

    def close(self) -> None:
        """Leave."""
        self.consumer.close()
