"""Which hosts have a live agent for a module, read from the agents' presence records.

Every agent writes its AgentLifecycle event, keyed by its id, to the compacted `sbx.presence` topic: when it
starts, every `PRESENCE_SECONDS` while it runs, and when it stops (in its own transactions, like everything it
publishes). A reader folds the topic into the latest record per agent; an agent counts as present while its
latest record is not "stopped" and is younger than `PRESENCE_TTL_S`.

(The group coordinator knows the members too, but librdkafka's admin coordinator requests abort the process
when the broker goes away under them: confluentinc/librdkafka#4605. A plain consumer of a topic has no such
path.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.kafka.config import admin_config, reader_config
from scalebox_stream.kafka.topics import PRESENCE_TOPIC, ensure_topics

PRESENCE_SECONDS = 5.0
"""How often a running agent renews its presence record."""
PRESENCE_TTL_S = 3 * PRESENCE_SECONDS
"""A presence record older than this is an agent gone without saying so (killed, or cut off)."""
CACHE_SECONDS = 1.0
"""How long a reader answers from what it read before it reads the topic again."""
CATCH_UP_SECONDS = 10.0
"""How long a reader's first look may wait to reach the end of the topic."""


@dataclass(frozen=True)
class Presence:
    """The latest record of one agent."""

    app: str
    module: str
    host: str
    state: str
    at_s: float
    """When the agent wrote it, in seconds since the epoch (the agent's clock)."""


def presence_of(event: Event) -> Presence:
    """The presence an AgentLifecycle event states."""
    return Presence(event.app, event.module, event.host, event.payload.get("state", ""), event.occurred_at / 1e6)


def is_live(presence: Presence, now_s: float, ttl_s: float = PRESENCE_TTL_S) -> bool:
    """True for an agent that has not said it stopped and renewed its record within `ttl_s`."""
    return presence.state != "stopped" and now_s - presence.at_s <= ttl_s


def hosts_served(board: dict[str, Presence], app: str, module: str, now_s: float,
                 ttl_s: float = PRESENCE_TTL_S) -> set[str]:
    """The hosts on which a live agent of `app`'s `module` runs."""
    return {p.host for p in board.values() if p.app == app and p.module == module and is_live(p, now_s, ttl_s)}


class HostDirectory:
    """Answers 'does an agent of this module serve this host?' from the presence topic, and makes host topics
    exist (cached). Safe to call from several threads."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient(admin_config(bootstrap))
        self.codec = EventCodec()
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._board: dict[str, Presence] = {}
        self._read_at: float | None = None
        self._topics: set[str] = set()

    def serves(self, app: str, module: str, host: str) -> bool:
        """True if a live agent of the module runs on `host` (and so reads its host topic)."""
        with self._lock:
            self._refresh()
            return host in hosts_served(self._board, app, module, time.time())

    def board(self) -> dict[str, Presence]:
        """The latest record of every agent that ever wrote one (by agent id)."""
        with self._lock:
            self._refresh()
            return dict(self._board)

    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create a topic once (idempotent, cached)."""
        if topic in self._topics:
            return
        ensure_topics(self.admin, {topic: partitions})
        self._topics.add(topic)

    def close(self) -> None:
        """Close the reading consumer, if one was made."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _refresh(self) -> None:
        """Read what was added to the topic since the last look (at most every CACHE_SECONDS)."""
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < CACHE_SECONDS:
            return
        first = self._consumer is None
        if first:
            self._consumer = self._open()
        assert self._consumer is not None
        deadline = now + (CATCH_UP_SECONDS if first else 0.0)
        while True:
            messages = self._consumer.consume(500, max(0.0, min(0.1, deadline - time.monotonic())))
            at_end = False
            for message in messages:
                if message.error():
                    at_end = at_end or message.error().code() == KafkaError._PARTITION_EOF
                    continue
                self._fold(message.key(), message.value())
            if at_end or not messages and time.monotonic() >= deadline:
                break
        self._read_at = time.monotonic()

    def _fold(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        agent = key.decode(errors="replace")
        if value is None:
            self._board.pop(agent, None)
            return
        try:
            event = self.codec.decode(value)
        except DecodeError:
            return  # not a presence record: ignored, it says nothing about any agent
        self._board[agent] = presence_of(event)

    def _open(self) -> Consumer:
        ensure_topics(self.admin, {PRESENCE_TOPIC: 1})
        consumer = Consumer(reader_config(self.bootstrap, "presence", **{
            "isolation.level": "read_committed", "enable.partition.eof": True, "fetch.wait.max.ms": 100}))
        consumer.assign([TopicPartition(PRESENCE_TOPIC, 0, OFFSET_BEGINNING)])
        return consumer
