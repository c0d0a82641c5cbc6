"""Which tasks wait, which wait for their time, which run, and which slots are free: the state the poll thread
and the slot threads share, and the one lock that guards it.

The poll thread adds fetched tasks (`add`), starts waiting ones on free slots (`next_task`), releases the
delayed ones that fell due and the ones admission refused (`release_due`), and forgets the tasks of partitions
given up (`forget`). A slot thread whose attempt ended takes the next task itself (`next_task(slot)`), so it
never waits for the poll thread. The in-flight count goes up in `next_task` and down in `ended` only: when a
task's report is committed, dropped (its partition was given up) or refused by admission.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from scalebox_stream.agent.task_runner import TaskMessage
from scalebox_stream.events import now_us
from scalebox_stream.policy.admission import recheck_delay

log = logging.getLogger(__name__)

Source = tuple[str, int]
"""A topic partition."""


def _nothing() -> None:
    return None


class Dispatcher:
    """Buffered, delayed and in-flight tasks, and free slots (see the module docstring)."""

    def __init__(self, slots: int, held: Callable[[], bool], on_start: Callable[[], None] = _nothing) -> None:
        """`held()`: True while no task may start (stopping, suspended, held by backpressure); `on_start` is
        told of every start (outside the lock)."""
        self.lock = threading.RLock()
        self.waiting: deque[TaskMessage] = deque()
        self.delayed: list[tuple[int, int, TaskMessage]] = []  # (due, offset, task): a heap
        self.in_flight = 0
        """Tasks taken by a slot whose report is not yet committed (or dropped, or refused)."""
        self.running: Counter[Source] = Counter()
        """In-flight tasks per partition."""
        self.free_slots: deque[int] = deque(range(slots))
        self.last_start = 0.0
        """When a task last started (monotonic seconds)."""
        self._refused: queue.SimpleQueue[tuple[TaskMessage, str]] = queue.SimpleQueue()
        self._held = held
        self._on_start = on_start

    @property
    def buffered(self) -> int:
        """Tasks waiting for a slot or for their time."""
        return len(self.waiting) + len(self.delayed)

    # ----- poll thread ---------------------------------------------------------------------------------

    def add(self, task: TaskMessage) -> None:
        """Buffer a fetched task; one with a `not_before` in the future waits for its time."""
        not_before = task.event.payload.get("not_before")
        if not_before and not_before > now_us():
            heapq.heappush(self.delayed, (not_before, task.offset, task))
        else:
            self.waiting.append(task)

    def release_due(self, holds: Callable[[Source, int], bool]) -> None:
        """Put the tasks admission refused back to wait for a re-check (if `holds(partition, assignment)` still),
        and the delayed tasks whose time has come back in line."""
        while not self._refused.empty():
            task, reason = self._refused.get()
            self.ended((task.source,))
            if not holds(task.source, task.assignment):
                continue  # its partition was given up meanwhile
            task = replace(task, refusals=task.refusals + 1)
            delay = recheck_delay(task.refusals)
            log.info("task %s not admitted (%s); re-check in %.1fs", task.event.task_id, reason, delay)
            heapq.heappush(self.delayed, (now_us() + int(delay * 1e6), task.offset, task))
        now = now_us()
        while self.delayed and self.delayed[0][0] <= now:
            self.waiting.append(heapq.heappop(self.delayed)[2])

    def forget(self, keep: Callable[[Source], bool]) -> None:
        """Drop the buffered and delayed tasks of partitions no longer held (`keep(partition)` False)."""
        with self.lock:  # no slot may start one of them
            self.waiting = deque(t for t in self.waiting if keep(t.source))
        self.delayed = [d for d in self.delayed if keep(d[2].source)]
        heapq.heapify(self.delayed)

    def clear(self) -> None:
        """Drop every buffered and delayed task (a graceful stop hands them back uncommitted)."""
        with self.lock:
            self.waiting.clear()
        self.delayed.clear()

    def running_on(self, sources: Iterable[Source]) -> bool:
        """Whether tasks of these partitions are in flight."""
        return any(self.running[s] for s in sources)

    # ----- any thread ----------------------------------------------------------------------------------

    def next_task(self, slot: int | None = None) -> tuple[TaskMessage, int] | None:
        """Take the next waiting task and a slot (`slot`, freed by its caller, or any free one), counted as in
        flight; None if no task may start now (then `slot` is back among the free ones)."""
        with self.lock:
            if slot is not None:
                self.free_slots.append(slot)
            if not self.waiting or not self.free_slots or self._held():
                return None
            task = self.waiting.popleft()
            slot = self.free_slots.pop() if slot is not None else self.free_slots.popleft()
            self.last_start = time.monotonic()
            self.in_flight += 1
            self.running[task.source] += 1
        if task.refusals == 0:  # reported by its TaskStarted: one event less per task (see TaskRunner.run)
            task = replace(task, accepted_at=now_us())
        self._on_start()
        return task, slot

    def refuse(self, task: TaskMessage, reason: str) -> None:
        """(Slot thread) Admission refused `task`: the poll thread re-checks it later (see `release_due`)."""
        self._refused.put((task, reason))

    def ended(self, sources: Iterable[Source]) -> None:
        """Tasks of these partitions (one entry per task) are out of flight: reported and committed, dropped
        with their partition, or refused by admission."""
        with self.lock:
            for source in sources:
                self.in_flight -= 1
                self.running[source] -= 1
