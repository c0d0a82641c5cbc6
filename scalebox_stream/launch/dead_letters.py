"""A run that can never finish because an event of its app was dead-lettered.

The projector sends each record it cannot take to the dead-letter topic (and counts it in the `dead_letters`
table); a dead-lettered TaskCreated of one of the run's start tasks means the projection never sees that task,
so `scalebox run` would wait forever. `DeadLetterWatch` reads the dead-letter topic from where it ended when
the run started, keeps the records of the run's app, and `stuck_reason` decides when to give up.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from scalebox_stream.launch.errors import OperationError


@dataclass(frozen=True)
class DeadEvent:
    """A dead-lettered event: its app, what it was, for which task, and why it was refused."""

    app: str
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
    shown = lost or list(dead)
    named = "; ".join(str(d) for d in shown[:3]) + (" ..." if len(shown) > 3 else "")
    count = len(dead)
    return (f"an event of app {app!r} was dead-lettered, so the run cannot finish: {named}"
            if count == 1 else
            f"{count} events of app {app!r} were dead-lettered, so the run cannot finish: {named}"
            ) + " (see the sbx.dlq topic and the dead_letters table)"


class DeadLetters(Protocol):
    """The dead-letter records written since the run started, a few at a time."""

    def read(self) -> list[DeadEvent]: ...

    def close(self) -> None: ...


class DeadLetterTopic:
    """Reads the dead-letter topic from its end at construction: each record as a DeadEvent (the original
    event decoded; an undecodable one keeps its key as the task id)."""

    def __init__(self, kafka: str, timeout_s: float = 10.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from scalebox_stream.events import EventCodec
        from scalebox_stream.kafka.config import reader_config
        from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC

        self.codec = EventCodec()
        self.consumer = Consumer(reader_config(kafka, "run-dead-letters", **{"log_level": 0}))
        topic = self.consumer.list_topics(DEAD_LETTER_TOPIC, timeout=timeout_s).topics.get(DEAD_LETTER_TOPIC)
        partitions = [] if topic is None or topic.error is not None else list(topic.partitions)
        ends = [TopicPartition(DEAD_LETTER_TOPIC, p) for p in partitions]
        self.consumer.assign([TopicPartition(tp.topic, tp.partition,
                                             self.consumer.get_watermark_offsets(tp, timeout=timeout_s)[1])
                              for tp in ends])

    def read(self) -> list[DeadEvent]:
        out = []
        for message in self.consumer.consume(500, timeout=0.1):
            if message.error() is not None:
                continue
            headers = {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers() or []}
            reason = f"{headers.get('kind', 'dead letter')}: {headers.get('error', '?')}"
            try:
                event = self.codec.decode(message.value())
            except Exception:  # undecodable: its key may still be a task id
                key = (message.key() or b"").decode("utf-8", "replace")
                out.append(DeadEvent("", "undecodable record", key, reason))
                continue
            out.append(DeadEvent(event.app, event.event_type, event.task_id, reason))
        return out

    def close(self) -> None:
        self.consumer.close()


class DeadLetterWatch:
    """Called on every poll of a run's wait with the run's counts: raises OperationError once the run cannot
    finish because of dead-lettered events of its app (see `stuck_reason`). Made before the start tasks are
    sent, so that it reads every dead letter they may cause."""

    def __init__(self, kafka: str, app: str, grace_s: float, letters: DeadLetters | None = None) -> None:
        self.app, self.grace_s = app, grace_s
        self.letters = letters if letters is not None else DeadLetterTopic(kafka)
        self.roots: set[str] = set()
        self.dead: list[DeadEvent] = []
        self._progress: object = None
        self._changed_at = time.monotonic()

    def expect(self, roots: Sequence[str]) -> None:
        """The run's start tasks (sent after the watch was made)."""
        self.roots = set(roots)

    def check(self, progress: object) -> None:
        """Read new dead letters; raise if the run is stuck on them."""
        now = time.monotonic()
        if progress != self._progress:
            self._progress, self._changed_at = progress, now
        self.dead += [d for d in self.letters.read() if d.app == self.app or d.task_id in self.roots]
        if problem := stuck_reason(self.app, self.dead, self.roots, now - self._changed_at, self.grace_s):
            raise OperationError(problem)

    def close(self) -> None:
        self.letters.close()
