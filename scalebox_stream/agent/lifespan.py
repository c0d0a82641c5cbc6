"""An agent that stops by itself: when its app is finished, or after its module's idle limit (see
`policy.lifespan`), wherever it runs (a child of `scalebox run`, over SSH, as a Slurm job: its job ends).

The app is finished when its result is set (`scalebox app set-finished TEXT`, from a task or the command line):
the state owner writes the result to its changelog, which `AppEndWatch` reads from the agent's start on (an
earlier run's result does not count). The poll thread asks `Lifespan.reason` once per turn; it answers from
what it has, reading the changelog at most once a second, without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from scalebox_stream.kafka.config import reader_config
from scalebox_stream.policy.lifespan import idle_expired, idle_limit_s
from scalebox_stream.spec.model import AppSpec
from scalebox_stream.state.model import APP, APP_RESULT, Item, StateTopics, decode_key, partition_of

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RETRY_OPEN_S = 10.0
"""How long an agent waits before it looks again for the state changelog (none yet: no owner ever ran)."""


class AppEndWatch:
    """Reads the app's result from the state changelog, from now on; `text()` is it once set (else None)."""

    def __init__(self, bootstrap: str, app: str, topics: StateTopics | None = None) -> None:
        self.bootstrap, self.app = bootstrap, app
        self.topics = topics or StateTopics.from_env()
        self._consumer: Any = None
        self._tried = -RETRY_OPEN_S
        self._text: str | None = None

    def text(self) -> str | None:
        """The result text set since the watch began, or None (never blocks for long)."""
        if self._text is None and self._open():
            for m in self._consumer.consume(100, 0):
                if m.error() is None and m.value() is not None and m.key() is not None \
                        and decode_key(m.key()) == (APP, self.app, APP_RESULT):
                    self._text = str(Item.from_json(m.value()).value)
        return self._text

    def _open(self) -> bool:
        if self._consumer is not None:
            return True
        if time.monotonic() - self._tried < RETRY_OPEN_S:
            return False
        self._tried = time.monotonic()
        consumer = Consumer(reader_config(self.bootstrap, "app-end", log_level=3,
                                          **{"isolation.level": "read_committed"}))
        try:
            meta = consumer.list_topics(self.topics.changelog, timeout=5).topics.get(self.topics.changelog)
        except KafkaException:
            meta = None
        if meta is None or meta.error is not None or not meta.partitions:
            consumer.close()
            return False
        partition = partition_of(self.app, APP_RESULT, len(meta.partitions))
        consumer.assign([TopicPartition(self.topics.changelog, partition, OFFSET_END)])
        self._consumer = consumer
        return True

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


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
        self._checked = -CHECK_EVERY_S

    def reason(self) -> str | None:
        """`app finished: TEXT`, `idle for Ns`, or None."""
        now = self._clock()
        if self._busy():
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        if idle_expired(self._idle_since, now, self.limit_s):
            return f"idle for {self.limit_s:g}s (the module's max_idle_polls x poll_interval_seconds)"
        if self._watch is None or now - self._checked < CHECK_EVERY_S:
            return None
        self._checked = now
        try:
            text = self._watch.text()
        except KafkaException as exc:  # the broker away for a moment: asked again next time
            log.debug("app result not read: %s", exc)
            return None
        return None if text is None else f"app finished: {text}"

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
