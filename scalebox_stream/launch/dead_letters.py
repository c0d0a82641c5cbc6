"""A run that can never finish because the projector dead-lettered an event of its app.

The projector records each record it cannot take in the `dead_letters` table (topic, partition, offset,
reason). A dead-lettered TaskCreated of one of the run's start tasks means the projection will never see that
task, so `scalebox run` would wait forever; `DeadLetterWatch` reads the records behind new dead letters,
keeps those of the run's app produced since it started, and `stuck_reason` decides when to give up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import psycopg

from scalebox_stream.launch.errors import OperationError

SINCE_SLACK_S = 60.0
"""Dead letters recorded this long before the run started are read too (PostgreSQL's clock may lag ours)."""


@dataclass(frozen=True)
class DeadEvent:
    """A dead-lettered event of the run's app: what it was, for which task, and why the projector refused it."""

    event_type: str
    task_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.event_type} of task {self.task_id[:8] or '?'} ({self.reason})"


def stuck_reason(app: str, dead: Sequence[DeadEvent], roots: Collection[str], unchanged_s: float,
                 grace_s: float) -> str | None:
    """Why the run of `app` cannot finish, or None while it may: at once if a start task's TaskCreated was
    dead-lettered (the projection never sees that task); for other dead letters of the app, once the run
    made no progress for `grace_s`."""
    if not dead:
        return None
    lost = [d for d in dead if d.event_type == "TaskCreated" and d.task_id in roots]
    if not lost and unchanged_s < grace_s:
        return None
    named = "; ".join(str(d) for d in (lost or dead)[:3]) + (" ..." if len(lost or dead) > 3 else "")
    count = len(dead)
    return (f"the projector dead-lettered {count} event{'s' if count != 1 else ''} of app {app!r}, so the run "
            f"cannot finish: {named} (see the dead_letters table and the sbx.dlq topic)")


Fetch = Callable[[list[tuple[str, int, int]]], dict[tuple[str, int, int], tuple[str, str, str, int] | None]]
"""(topic, partition, offset) -> (app, event_type, task_id, occurred_at µs) of the record there, None if it
cannot be decoded."""


def fetch_events(kafka: str) -> tuple[Fetch, Callable[[], None]]:
    """A reader of the events behind dead letters, and how to close it."""
    from confluent_kafka import Consumer, TopicPartition

    from scalebox_stream.events import EventCodec
    from scalebox_stream.kafka.config import reader_config

    consumer: Consumer | None = None
    codec = EventCodec()

    def fetch(positions: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], tuple[str, str, str, int] | None]:
        nonlocal consumer
        consumer = consumer or Consumer(reader_config(kafka, "run-dead-letters", **{"log_level": 0}))
        out: dict[tuple[str, int, int], tuple[str, str, str, int] | None] = {}
        for topic, partition, offset in positions:
            consumer.assign([TopicPartition(topic, partition, offset)])
            message = consumer.poll(5.0)
            out[(topic, partition, offset)] = None
            if message is None or message.error() is not None or message.offset() != offset:
                continue
            try:
                event = codec.decode(message.value())
            except Exception:  # undecodable: its key may still be a task id
                key = (message.key() or b"").decode("utf-8", "replace")
                out[(topic, partition, offset)] = ("", "undecodable record", key, 0)
                continue
            out[(topic, partition, offset)] = (event.app, event.event_type, event.task_id, event.occurred_at)
        return out

    def close() -> None:
        if consumer is not None:
            consumer.close()

    return fetch, close


_NEW_DEAD_LETTERS = """SELECT topic, partition, "offset", reason FROM dead_letters
                       WHERE recorded_at >= to_timestamp(%s) ORDER BY recorded_at LIMIT 1000"""


class DeadLetterWatch:
    """Called on every poll of a run's wait: raises OperationError once the run cannot finish because of
    dead-lettered events of its app (see `stuck_reason`)."""

    def __init__(self, kafka: str, app: str, roots: Sequence[str], since_s: float, grace_s: float,
                 fetch: tuple[Fetch, Callable[[], None]] | None = None, every_s: float = 1.0) -> None:
        self.kafka, self.app, self.roots = kafka, app, set(roots)
        self.since_s, self.grace_s, self.every_s = since_s, grace_s, every_s
        self._fetch, self._close = fetch or fetch_events(kafka)
        self.looked: dict[tuple[str, int, int], DeadEvent | None] = {}
        self._last_check = 0.0
        self._progress: object = None
        self._changed_at = time.monotonic()

    def check(self, conn: psycopg.Connection, progress: object) -> None:
        """Look for new dead letters (at most every `every_s`); raise if the run is stuck on them."""
        now = time.monotonic()
        if progress != self._progress:
            self._progress, self._changed_at = progress, now
        if now - self._last_check < self.every_s:
            return
        self._last_check = now
        with conn.cursor() as cur:
            rows = cur.execute(_NEW_DEAD_LETTERS, (self.since_s - SINCE_SLACK_S,)).fetchall()
        new = {(t, p, o): reason for t, p, o, reason in rows if (t, p, o) not in self.looked}
        if new:
            for position, found in self._fetch(list(new)).items():
                self.looked[position] = self._ours(found, new[position])
        dead = [d for d in self.looked.values() if d is not None]
        if problem := stuck_reason(self.app, dead, self.roots, now - self._changed_at, self.grace_s):
            raise OperationError(problem)

    def _ours(self, found: tuple[str, str, str, int] | None, reason: str) -> DeadEvent | None:
        """The dead letter as a DeadEvent if it belongs to this run's app and time (or names a start task)."""
        if found is None:
            return None
        app, event_type, task_id, occurred_us = found
        if task_id in self.roots or (app == self.app and occurred_us >= self.since_s * 1e6):
            return DeadEvent(event_type, task_id, reason)
        return None

    def close(self) -> None:
        self._close()
