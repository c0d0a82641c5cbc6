"""An agent that stops by itself: when its app is finished, or after its module's idle limit (see
`policy.lifespan`), wherever it runs (a child of `scalebox run`, over SSH, as a Slurm job: its job ends).

The app is finished when its result is set (`scalebox app set-finished TEXT`, from a task or the command line):
the state owner writes the result to its changelog, which `AppEndWatch` reads from the agent's start on (an
earlier run's result does not count) on a thread of its own. The poll thread asks `Lifespan.reason` once per
turn; it answers from what it has, without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from scalebox_stream.kafka.config import reader_config
from scalebox_stream.policy.lifespan import idle_expired, idle_limit_s
from scalebox_stream.spec.model import AppSpec
from scalebox_stream.state.model import APP, APP_RESULT, Item, StateTopics, decode_key, partition_of

log = logging.getLogger(__name__)

RETRY_OPEN_S = 10.0
"""How long an agent waits before it looks again for the state changelog (none yet: no owner ever ran)."""


class AppEndWatch:
    """Reads the app's result from the state changelog, from now on, on a thread of its own (the poll thread
    never waits for Kafka here); `text()` is the result once set, else None."""

    def __init__(self, bootstrap: str, app: str, topics: StateTopics | None = None) -> None:
        self.bootstrap, self.app = bootstrap, app
        self.topics = topics or StateTopics.from_env()
        self._text: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="app-end", daemon=True)
        self._thread.start()

    def text(self) -> str | None:
        """The result text set since the watch began, or None."""
        return self._text

    def _watch(self) -> None:
        consumer = None
        try:
            while consumer is None and not self._stop.is_set():
                consumer = self._open()
                if consumer is None:
                    self._stop.wait(RETRY_OPEN_S)
            while consumer is not None and self._text is None and not self._stop.is_set():
                for m in consumer.consume(100, 0.5):
                    if m.error() is None and m.value() is not None and m.key() is not None \
                            and decode_key(m.key()) == (APP, self.app, APP_RESULT):
                        self._text = str(Item.from_json(m.value()).value)
        except (KafkaException, RuntimeError, ValueError) as exc:  # the agent runs on; it stops when told to
            log.warning("the app's result is not watched: %s", exc)
        finally:
            if consumer is not None:
                consumer.close()

    def _open(self) -> Any:
        """A consumer at the end of the changelog partition of the app's result; None if there is no changelog
        yet."""
        consumer = Consumer(reader_config(self.bootstrap, "app-end", log_level=3,
                                          **{"isolation.level": "read_committed"}))
        try:
            meta = consumer.list_topics(self.topics.changelog, timeout=10).topics.get(self.topics.changelog)
        except KafkaException:
            meta = None
        if meta is None or meta.error is not None or not meta.partitions:
            consumer.close()
            return None
        partition = partition_of(self.app, APP_RESULT, len(meta.partitions))
        consumer.assign([TopicPartition(self.topics.changelog, partition, OFFSET_END)])
        return consumer

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Lifespan:
    """(Poll thread) Why the agent should stop by itself now, if it should."""

    def __init__(self, spec: AppSpec, module: str, busy: Callable[[], bool],
                 app_end: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """`busy`: whether a task is running, buffered or waiting; `app_end`: makes the watch of the app's result
        (an `AppEndWatch`; None: the agent does not watch it)."""
        m = spec.modules[module]
        self.limit_s = idle_limit_s(m.max_idle_polls, spec.default_idle_polls, m.poll_interval_seconds,
                                    m.always_running)
        self._busy, self._clock = busy, clock
        self._watch = None if app_end is None else app_end()
        self._idle_since: float | None = clock()

    def reason(self) -> str | None:
        """`app finished: TEXT`, `idle for Ns`, or None."""
        now = self._clock()
        if self._busy():
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        if idle_expired(self._idle_since, now, self.limit_s):
            return f"idle for {self.limit_s:g}s (the module's max_idle_polls x poll_interval_seconds)"
        text = None if self._watch is None else self._watch.text()
        return None if text is None else f"app finished: {text}"

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
