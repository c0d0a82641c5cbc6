"""The records of the state protocol (commands, replies, changelog values), topic names and partitioning.

Commands, replies and changelog values are JSON: they are internal to the protocol (the events the projection
reads are Avro, `StateChanged`).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from scalebox_stream.kafka.topics import STATE_PARTITIONS, STATE_PREFIX, STATE_REPLY_PARTITIONS

SEMAPHORE, VARIABLE, GLOBAL, APP = "semaphore", "variable", "global", "app"
KINDS = (SEMAPHORE, VARIABLE, GLOBAL, APP)
APP_RESULT = "result"
"""The name of the one `app` item of an app: its result text (`scalebox app set-finished TEXT`)."""

DELETED: tuple[str, str, str] = ("~deleted", "", "")
"""The key of each partition's memory of recent deletes (request id -> answer in its `recent`, the count of
deletes as its value): the deleted item is gone (a tombstone on the changelog), so a retried delete finds its
first answer here. No command names this kind; no event is sent for it."""

OK, ERROR, NOT_FOUND = 0, 1, 2
"""Scalebox's return codes: 0 ok, 1 error (a refusal too), 2 not found."""
BELOW_ZERO, CONFLICT, EXISTS, INVALID = "below_zero", "conflict", "exists", "invalid"
"""Why a command was refused (the reply's `reason`)."""

RECENT_MAX = 128
"""Request ids (with their replies) kept per item in its changelog value, to answer a retry with the first
answer even after the owner restarted."""
_REGEX_META = set(".*+?^$[]{}()|\\")


@dataclass(frozen=True)
class StateTopics:
    """The topics and consumer group of one state service (tests use a prefix of their own)."""

    prefix: str = STATE_PREFIX
    partitions: int = STATE_PARTITIONS
    reply_partitions: int = STATE_REPLY_PARTITIONS
    owner_group: str | None = None
    """The owners' consumer group, if not the prefix (a new group over the same topics)."""

    @classmethod
    def from_env(cls) -> StateTopics:
        """The default topics, or those under `SCALEBOX_STATE_PREFIX` (tests keep theirs apart this way)."""
        return cls(os.environ.get("SCALEBOX_STATE_PREFIX") or STATE_PREFIX)

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def changelog(self) -> str:
        return f"{self.prefix}.changelog"

    @property
    def replies(self) -> str:
        return f"{self.prefix}.replies"

    @property
    def group(self) -> str:
        """The owners' consumer group (also the prefix of their transactional ids)."""
        return self.owner_group or self.prefix

    def ensure(self, bootstrap: str) -> None:
        """Create these topics (and the events topic) if missing."""
        from confluent_kafka.admin import AdminClient

        from scalebox_stream.kafka.config import admin_config
        from scalebox_stream.kafka.topics import ensure_state_topics

        ensure_state_topics(AdminClient(admin_config(bootstrap)), self.prefix, self.partitions,
                            self.reply_partitions)


Key = tuple[str, str, str]
"""(kind, app, name); globals have app ''."""


def partition_of(app: str, name: str, partitions: int) -> int:
    """The command and changelog partition of an item: a stable hash of (app, name)."""
    return zlib.crc32(f"{app}\x00{name}".encode()) % partitions


def encode_key(key: Key) -> bytes:
    """The changelog record key of an item (compaction keeps its latest value)."""
    return json.dumps(list(key), separators=(",", ":")).encode()


def decode_key(data: bytes) -> Key:
    kind, app, name = json.loads(data)
    return kind, app, name


def is_pattern(name: str) -> bool:
    """Whether a name holds an unescaped regular-expression metacharacter (Scalebox treats it as a pattern)."""
    escaped = False
    for ch in name:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in _REGEX_META:
            return True
    return False


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A name pattern as Scalebox reads it: anchored with '^' unless it starts with a metacharacter, so a plain
    name matches every name it prefixes. Raises re.error for a bad pattern."""
    if pattern and pattern[0] not in _REGEX_META:
        pattern = "^" + pattern
    return re.compile(pattern)


@dataclass
class Item:
    """One semaphore (int value), variable, global or app result (str value), as its changelog value holds it."""

    value: int | str
    version: int = 1
    recent: dict[str, list[Any]] = field(default_factory=dict)
    """request id -> [code, value] of the requests that changed or read it lately (oldest first)."""

    def remember(self, request_id: str, code: int, value: Any) -> None:
        """Keep a request's answer, dropping the oldest beyond RECENT_MAX."""
        self.recent[request_id] = [code, value]
        while len(self.recent) > RECENT_MAX:
            del self.recent[next(iter(self.recent))]

    def to_json(self) -> bytes:
        return json.dumps({"value": self.value, "version": self.version, "recent": list(self.recent.items())},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Item:
        d = json.loads(data)
        return cls(d["value"], d["version"], {k: v for k, v in d["recent"]})

    def copy(self) -> Item:
        return Item(self.value, self.version, dict(self.recent))


@dataclass
class Command:
    """One request to an owner. `name` is a pattern for `scan` and `add_matching`."""

    id: str
    op: str                       # create get add set delete scan add_matching
    kind: str
    app: str
    name: str
    value: Any = None             # create: int; set: str
    n: int = 0                    # add, add_matching
    expect: int | None = None     # add: only if the value is this (compare-and-add)
    auto_create: bool = False     # get, add: a missing semaphore starts at 0
    allow_negative: bool = False  # add: may go below zero
    conflict: str = "error"       # create of an existing one: error, ignore or overwrite
    reply_to: int = 0             # the reply partition

    @property
    def key(self) -> Key:
        return self.kind, self.app, self.name

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Command:
        return cls(**json.loads(data))


@dataclass
class Reply:
    """An owner's answer: Scalebox's code, a value or a name -> value map, and why it was refused."""

    id: str
    code: int
    value: Any = None
    values: dict[str, Any] | None = None
    reason: str = ""
    error: str = ""
    version: int | None = None
    """The item's version (`get`): how many times it changed."""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Reply:
        return cls(**json.loads(data))
