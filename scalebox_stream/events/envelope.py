"""The event envelope shared by every state change, and helpers to build events."""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from scalebox_stream.events.payloads import Payload

SCHEMA_VERSION = 1
_BY_FULL_NAME = {cls.FULL_NAME: cls for cls in Payload.BY_NAME.values()}


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
    """One event: envelope fields plus a typed payload (`event_type` names the payload record).

    A dict payload (from code not yet switched to the payload classes) becomes its class here, with the
    schema's defaults for the fields it leaves out."""

    event_type: str
    app: str
    payload: Payload
    module: str = ""
    task_id: str = ""
    attempt: int = 0
    cluster: str = ""
    host: str = ""
    producer: str = ""
    event_id: str = field(default_factory=random_id)
    occurred_at: int = field(default_factory=now_us)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        payload = self.payload
        if type(payload) is dict:
            self.payload = Payload.BY_NAME[self.event_type](**payload)
        elif self.event_type != payload.NAME:
            raise ValueError(f"a {payload.NAME} payload in a {self.event_type} event")

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
            "payload": (self.payload.FULL_NAME, self.payload.to_avro()),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Event:
        """Build an Event from a decoded Avro record (payload as a `(full name, dict)` pair)."""
        name, payload = record["payload"]
        kind = _BY_FULL_NAME[name]
        return cls(kind.NAME, record["app"], kind.from_avro(payload), record["module"],
                   record["task_id"], record["attempt"], record["cluster"], record["host"], record["producer"],
                   record["event_id"], record["occurred_at"], record["schema_version"])


def child_task_id(parent_task_id: str, position: int) -> str:
    """Deterministic id of the `position`-th task emitted by a parent, so duplicates are recognisable."""
    return str(uuid.uuid5(uuid.UUID(parent_task_id), f"out/{position}"))


def new_task_id() -> str:
    """A fresh task id for tasks created from outside (CLI, start tasks)."""
    return random_id()
