"""Which hosts have a live agent for a module, read from the consumer group's members."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import admin_config
from scalebox_stream.kafka.topics import ensure_topics, module_group, task_topic

CACHE_SECONDS = 2.0


class HostDirectory:
    """Answers 'does an agent of this module serve this host?' and makes host topics exist (cached)."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient(admin_config(bootstrap))
        self._lock = threading.Lock()
        self._served: dict[str, tuple[float, set[str]]] = {}
        self._topics: set[str] = set()

    def served_topics(self, app: str, module: str) -> set[str]:
        """Topics that some live member of the module's group is assigned."""
        group = module_group(app, module)
        with self._lock:
            cached = self._served.get(group)
            if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
        topics: set[str] = set()
        try:
            description = self.admin.describe_consumer_groups([group], request_timeout=10)[group].result()
            for member in description.members:
                topics.update(tp.topic for tp in member.assignment.topic_partitions)
        except KafkaException:
            pass
        with self._lock:
            self._served[group] = (time.monotonic(), topics)
        return topics

    def serves(self, app: str, module: str, host: str) -> bool:
        """True if a live agent of the module reads the topic of `host`."""
        return task_topic(app, module, host) in self.served_topics(app, module)

    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create a topic once (idempotent, cached)."""
        if topic in self._topics:
            return
        ensure_topics(self.admin, {topic: partitions})
        self._topics.add(topic)
