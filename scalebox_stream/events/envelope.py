"""The event envelope shared by every state change, and helpers to build events."""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "sbx.events"
SCHEMA_VERSION = 1


_IDS = random.Random()  # seeded from os.urandom; its own, so a caller's random.seed() cannot repeat ids
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDS.seed)  # a forked child must not repeat its parent's ids


def random_id() -> str:
    """A random (version 4) UUID from a generator seeded from os.urandom: an event id costs no system call, and
    none of the context switches a slot thread pays for each one while other threads want the interpreter."""
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


def now_us() -> int:
    """Current wall-clock time in microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(slots=True)
class Event:
    """One event: envelope fields plus a typed payload (`event_type` names the payload record)."""

    event_type: str
    app: str
    payload: dict[str, Any]
    module: str = ""
    task_id: str = ""
    attempt: int = 0
    cluster: str = ""
    host: str = ""
    producer: str = ""
    event_id: str = field(default_factory=random_id)
    occurred_at: int = field(default_factory=now_us)
    schema_version: int = SCHEMA_VERSION

    def to_record(self) -> dict[str, Any]:
        """The Avro record, with the payload tagged by its record name."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at,
            "app": self.app,
            "module": self.module,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "cluster": self.cluster,
            "host": self.host,
            "producer": self.producer,
            "schema_version": self.schema_version,
            "payload": (f"{NAMESPACE}.{self.event_type}", self.payload),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Event:
        """Build an Event from a decoded Avro record (payload as a `(name, dict)` pair)."""
        name, payload = record["payload"]
        return cls(name.rsplit(".", 1)[-1], record["app"], payload, record["module"],
                   record["task_id"], record["attempt"], record["cluster"], record["host"], record["producer"],
                   record["event_id"], record["occurred_at"], record["schema_version"])


def child_task_id(parent_task_id: str, position: int) -> str:
    """Deterministic id of the `position`-th task emitted by a parent, so duplicates are recognisable."""
    return str(uuid.uuid5(uuid.UUID(parent_task_id), f"out/{position}"))


def new_task_id() -> str:
    """A fresh task id for tasks created from outside (CLI, start tasks)."""
    return random_id()
