"""How many tasks wait for a module: the end of its task topics minus its group's committed offsets.

Transaction markers take offsets too, so the count can run ahead of the true backlog by the number of
transactions since the last commit: producers that obey it slow down early, never late.

The group's committed offsets are read by a consumer that carries the module's group id but never subscribes
(so it never joins the group), not by an admin client: librdkafka's admin requests to a group coordinator
assert on a reference count, and kill the process, when the broker goes away under them.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from scalebox_stream.kafka.config import reader_config
from scalebox_stream.kafka.topics import module_group, task_topic

CACHE_SECONDS = 0.5


class BacklogMonitor:
    """Backlog of modules, cached for half a second."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = Consumer(reader_config(bootstrap, "backlog"))
        self._readers: dict[str, Consumer] = {}  # module group -> a consumer that only reads its offsets
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    def _reader(self, group: str) -> Consumer:
        """A consumer of `group` that never joins it, to read its committed offsets. Read uncommitted: a read
        committed one would wait out the agents' open transactions (KIP-447's stable offsets)."""
        if group not in self._readers:
            self._readers[group] = Consumer(reader_config(self.bootstrap, "backlog", group_id=group,
                                                           **{"isolation.level": "read_uncommitted"}))
        return self._readers[group]

    def backlog(self, app: str, module: str) -> int:
        """Tasks of `module` not yet committed by its agents (over every task topic of the module)."""
        key = (app, module)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        value = self.measure(app, module)
        self._cache[key] = (time.monotonic(), value)
        return value

    def measure(self, app: str, module: str) -> int:
        """The backlog now (no cache)."""
        base = task_topic(app, module)
        metadata = self.consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(name, p) for name, topic in metadata.items()
                      if name == base or name.startswith(base + ".host.") for p in topic.partitions]
        try:
            committed = {(tp.topic, tp.partition): tp.offset
                         for tp in self._reader(module_group(app, module)).committed(partitions, timeout=10)}
        except KafkaException:
            committed = {}
        total = 0
        for tp in partitions:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            start = committed.get((tp.topic, tp.partition), -1)
            total += max(0, high - (start if start >= 0 else low))
        return total

    def close(self) -> None:
        """Release the clients."""
        for reader in self._readers.values():
            reader.close()
        self.consumer.close()


class BacklogWatcher:
    """Refreshes the backlog of some modules in a background thread; `over_bound()` never blocks."""

    def __init__(self, bootstrap: str, app: str, bounds: dict[str, int], interval_s: float = CACHE_SECONDS) -> None:
        import threading

        self.app, self.bounds, self.interval_s = app, bounds, interval_s
        self.latest: dict[str, int] = {}
        self._started_since = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._monitor = BacklogMonitor(bootstrap) if bounds else None
        self._thread = threading.Thread(target=self._loop, name="backlog", daemon=True)
        if bounds:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                started_before = self._started_since
            measured = {}
            for module in self.bounds:
                try:
                    measured[module] = self._monitor.measure(self.app, module)
                except KafkaException:
                    continue
            with self._lock:
                self.latest.update(measured)
                self._started_since -= started_before
            self._stop.wait(self.interval_s)

    def note_started(self) -> None:
        """A task that may emit one task downstream started (counted until the next measurement)."""
        with self._lock:
            self._started_since += 1

    def over_bound(self) -> str | None:
        """A module whose backlog, plus what started since it was measured, reaches its bound."""
        with self._lock:
            pending = self._started_since
        return next((m for m, bound in self.bounds.items() if self.latest.get(m, 0) + pending >= bound), None)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._monitor is not None:
            self._thread.join(timeout=5)
            self._monitor.close()
