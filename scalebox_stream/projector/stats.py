"""The projector's counters: one process's totals, and the Prometheus metrics of each committed batch."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter

from scalebox_stream import metrics
from scalebox_stream.projector.batch import Batch

_event_type = attrgetter("event_type")


@dataclass
class ProjectorStats:
    """Counters of one projector process."""

    batches: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    db_reconnects: int = 0
    first_batch_at: float | None = None  # time.monotonic() when the first batch began
    last_batch_at: float | None = None   # ... and when the last one was committed

    def rate(self) -> float:
        """Events per second between the first batch's start and the last commit."""
        if self.first_batch_at is None or self.last_batch_at is None or self.last_batch_at <= self.first_batch_at:
            return 0.0
        return self.events / (self.last_batch_at - self.first_batch_at)

    def started(self, batch: Batch) -> None:
        """A batch was read (the rate counts from the first one)."""
        if self.first_batch_at is None:
            self.first_batch_at = batch.started

    def committed(self, batch: Batch, fresh: int, dead: int) -> None:
        """`batch` was committed: `fresh` of its events applied, `dead` records dead-lettered."""
        self.batches += 1
        self.events += len(batch.records)
        self.applied += fresh
        self.duplicates += len(batch.events) - fresh
        self.dead_letters += dead
        self.last_batch_at = time.monotonic()

    def reconnected(self) -> None:
        self.db_reconnects += 1
        metrics.DB_RECONNECTS.inc()


def observe_batch(batch: Batch, fresh: list, finished: float) -> None:
    """Prometheus metrics of a committed batch (dead letters are counted by their sink)."""
    metrics.BATCHES.inc()
    metrics.BATCH_SECONDS.observe(finished - batch.started)
    metrics.DUPLICATE_EVENTS.inc(len(batch.events) - len(fresh))
    for event_type, n in Counter(map(_event_type, fresh)).items():
        metrics.PROJECTED_EVENTS.labels(metrics.event_type_label(event_type)).inc(n)
