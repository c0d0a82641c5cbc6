"""The commit unit: what finished since the last transaction, and the one place where it becomes one.

Slots hand in lifecycle records (`put`), the marks of attempts that started running (`mark_started`) and the
reports of attempts that ended (`report`), all through queues that never block. The poll thread calls
`publish`: the records, every report's records (TaskFinished, child tasks, retries) and the partition positions
that count those tasks as done go out in one Kafka transaction, so a task's outputs, its events and its offset
commit land together or not at all. The commit metadata also records which attempts are running (see
`offsets`), which is how the next owner of a partition recognises the attempts of an agent that died.

The partition trackers move only after the transaction has committed. A failed one keeps everything for the next
try (the producer's transaction aborted, or the producer replaced after a fatal error), except a record Kafka
refused for good (too large, invalid): the report holding it is replaced by that task's minimal error report,
so one task's poison never holds the others' reports back. A report whose partition
was given up meanwhile is dropped: the next owner runs that attempt again.

It also holds the pacing state (when records and positions began to wait, when the last transaction ended) that
`policy.pacing` decides on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from scalebox_stream.agent.dispatcher import Dispatcher, Source
from scalebox_stream.agent.offsets import PartitionTracker
from scalebox_stream.agent.task_runner import OutMessage, TaskMessage
from scalebox_stream.kafka.errors import failure_refuses_membership
from scalebox_stream.kafka.transactions import RecordRefused, TransactionHung
from scalebox_stream.policy.membership import membership_evidence
from scalebox_stream.policy.pacing import due_at, held_until, others_running, pending_since, poll_wait, publish_due

log = logging.getLogger(__name__)


@dataclass
class Done:
    """A finished offset waiting to be published: an attempt that ran, or one that needed no run."""

    source: Source
    offset: int
    assignment: int
    records: list[OutMessage]
    ran_in_slot: bool = True
    outcome: str = ""
    unsendable: Callable[[str], list[OutMessage]] | None = None
    """The records that replace `records` (given why) when Kafka refuses one of them for good; without it, or
    if they are refused too, the offset is published with no records."""


class Publisher(Protocol):
    """What the commit unit needs of a transactional producer (`kafka.transactions.TransactionalPublisher`)."""

    def publish(self, records: Iterable[Any], offsets: list[TopicPartition], group_metadata: Any) -> None: ...

    def abort(self) -> None: ...

    def replace(self) -> None: ...


class TransactionTimer(Protocol):
    """Where transactions are counted (`telemetry.AgentTelemetry`)."""

    def transaction(self, seconds: float, committed: bool) -> None: ...


def _ignore(_: bool | None) -> None:
    return None


class Checkpoint:
    """Reports, records and positions of one agent, published together (see the module docstring)."""

    def __init__(self, publisher: Publisher, group_metadata: Callable[[], Any], dispatcher: Dispatcher,
                 telemetry: TransactionTimer, retry_pause_s: float = 0.5) -> None:
        """`group_metadata()`: the consumer's group metadata, asked for only when positions are committed."""
        self.publisher = publisher
        self.group_metadata = group_metadata
        self.dispatcher = dispatcher
        self.telemetry = telemetry
        self.retry_pause_s = retry_pause_s
        self.on_membership: Callable[[bool | None], None] = _ignore
        """Told what each transaction says about the agent's group membership (see `policy.membership`)."""
        self.trackers: dict[Source, PartitionTracker] = {}
        self.offsets_dirty = False
        """Positions moved on their own (the consumer reached a partition's end) and are not published yet."""
        self.records_since: float | None = None  # when queued lifecycle records were first seen
        self.offsets_since: float | None = None  # when positions first moved, unpublished
        self.last_publish: float | None = None  # when the last transaction ended
        self._outbox: queue.SimpleQueue[OutMessage] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._started: queue.SimpleQueue[TaskMessage] = queue.SimpleQueue()
        self.put: Callable[[OutMessage], None] = self._outbox.put
        """(Any thread) Queue a record for the next transaction."""
        self._reported = threading.Event()
        """Set by every report: the poll thread's wait while every slot runs ends with it (see `wait`)."""
        self._slot_freed = threading.Event()
        """Set when a slot finds no task to take next (see `slot_freed`)."""
        self.mark_started: Callable[[TaskMessage], None] = self._started.put
        """(Slot thread) An attempt started running: the next commit records it in its partition's lease."""

    def report(self, done: Done) -> None:
        """(Any thread) Queue a finished offset for the next transaction; wakes a poll thread waiting for it."""
        self._done.put(done)
        self._reported.set()

    # ----- partitions (poll thread) --------------------------------------------------------------------

    def holds(self, source: Source, assignment: int) -> bool:
        """Whether the partition is still held under the same assignment (a task came with it)."""
        tracker = self.trackers.get(source)
        return tracker is not None and tracker.assignment == assignment

    def forget(self, sources: Iterable[Source]) -> None:
        """Partitions given up: nothing of theirs is committed any more."""
        for source in sources:
            self.trackers.pop(source, None)

    def reached_end(self, source: Source, end: int) -> None:
        """The consumer reached a held partition's end at `end`."""
        tracker = self.trackers.get(source)
        if tracker is not None:
            self.offsets_dirty |= tracker.reached_end(end)

    # ----- pacing (poll thread) ------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether to publish now (see `policy.pacing`)."""
        now = time.monotonic()
        self.records_since = pending_since(not self._outbox.empty(), self.records_since, now)
        self.offsets_since = pending_since(self.offsets_dirty, self.offsets_since, now)
        finished, others = self._gap_state()
        return publish_due(finished > 0, self.records_since, self.offsets_since, now, others, self.last_publish)

    def poll_wait(self, now: float) -> float:
        """How long the poll loop may wait now (see `policy.pacing.poll_wait`)."""
        dispatcher = self.dispatcher
        running = bool(dispatcher.in_flight or dispatcher.delayed)
        finished, others = self._gap_state()
        held = held_until(finished > 0 or self.records_since is not None, others, self.last_publish)
        return poll_wait(running, dispatcher.last_start, now, due_at(self.records_since, self.offsets_since), held)

    def report_wakes(self, now: float) -> bool:
        """Whether a report coming in now would be published at once: not while the transaction gap holds
        what is pending (another report ends nothing sooner then)."""
        finished, others = self._gap_state()
        held = held_until(finished > 0 or self.records_since is not None, others, self.last_publish)
        return held is None or held <= now

    def slot_freed(self) -> None:
        """(Slot thread) The slot found no task to take next: a poll thread waiting in `wait` goes back to the
        consumer, which may hold one for it."""
        self._slot_freed.set()
        self._reported.set()  # a wait for reports ends too (an attempt admission refused reports nothing)

    def wait(self, now: float, timeout: float) -> None:
        """(Poll thread, while every slot runs) Wait up to `timeout` s: less if a report comes in that could be
        published at once (`report_wakes`), or if a slot falls idle. A consumer's poll could be woken by neither."""
        event = self._reported if self.report_wakes(now) else self._slot_freed
        if event.wait(timeout):
            event.clear()
        if self._slot_freed.is_set():
            self._slot_freed.clear()

    def _gap_state(self) -> tuple[int, bool]:
        """Reports waiting, and whether the transaction gap may hold them (see `pacing.others_running`)."""
        finished = self._done.qsize()
        return finished, others_running(finished, self.dispatcher.in_flight - finished)

    # ----- the transaction (poll thread) ---------------------------------------------------------------

    def publish(self) -> None:
        """Publish pending records and the partition positions, in one transaction."""
        while not self._started.empty():
            task = self._started.get()
            if self.holds(task.source, task.assignment):
                self.trackers[task.source].mark_running(task.offset, task.event.attempt)
        finished: list[Done] = []
        dropped: list[tuple[Source, int]] = []
        while not self._done.empty():
            done = self._done.get()
            if self.holds(done.source, done.assignment):
                finished.append(done)
                continue
            # The partition moved to another agent (or came back to this one since), which sees this attempt
            # as lost and runs it again: publishing these outputs too would duplicate them.
            dropped.append((done.source, done.offset))
            if done.ran_in_slot:
                self.dispatcher.ended((done.source,))
        if dropped:
            log.warning("%s", dropped_reports(dropped))
        records: list[OutMessage] = []
        while not self._outbox.empty():
            records.append(self._outbox.get())
        self.records_since = self.offsets_since = None
        if not finished and not records and not self.offsets_dirty:
            return
        self.offsets_dirty = False
        began = time.perf_counter()
        try:
            if self._transact(records + [r for d in finished for r in d.records], finished):
                self.on_membership(membership_evidence(True))
        except RecordRefused as exc:
            self.telemetry.transaction(time.perf_counter() - began, committed=False)
            self.publisher.abort()
            self._requeue(*self._without(exc, records, finished))
            return
        except (KafkaException, TransactionHung) as exc:
            self.telemetry.transaction(time.perf_counter() - began, committed=False)
            self._recover(exc, records, finished)
            return
        finally:
            self.last_publish = time.monotonic()
        self.telemetry.transaction(time.perf_counter() - began, committed=True)
        self.dispatcher.ended([d.source for d in finished if d.ran_in_slot])

    def _transact(self, records: list[OutMessage], finished: list[Done]) -> bool:
        """Publish `records` with the positions that count `finished` as done; the trackers take those
        positions only once the transaction has committed (a failed one leaves them as they were, so no
        later commit can count a task done whose report is not published). True if positions were committed."""
        changed = {d.source: self.trackers[d.source].copy() for d in finished if d.source in self.trackers}
        for done in finished:
            if done.source in changed:
                changed[done.source].finish(done.offset)
        trackers = {**self.trackers, **changed}
        # Only positions that differ from what this agent committed last: the others are stored already, and
        # each one costs the transaction an offset record.
        moved = {source: position for source, t in trackers.items() if (position := t.position()) != t.committed}
        offsets = [TopicPartition(topic, p, watermark, metadata) for (topic, p), (watermark, metadata) in moved.items()]
        self.publisher.publish(records, offsets, self.group_metadata() if offsets else None)
        self.trackers.update(changed)
        for source, position in moved.items():
            self.trackers[source].committed = position
        return bool(offsets)

    def _recover(self, exc: Exception, records: list[OutMessage], finished: list[Done]) -> None:
        """Abort, keep everything for the next try; a fatal producer error gets a new producer."""
        log.error("transaction failed (%s); retrying", exc)
        self.on_membership(membership_evidence(False, failure_refuses_membership(exc)))
        if isinstance(exc, KafkaException) and exc.args[0].fatal():
            log.warning("replacing the producer after a fatal error")
            self.publisher.replace()
        elif isinstance(exc, KafkaException):
            self.publisher.abort()
        self._requeue(records, finished)
        time.sleep(self.retry_pause_s)

    def _requeue(self, records: list[OutMessage], finished: list[Done]) -> None:
        """Keep records and reports for the next transaction."""
        for record in records:
            self._outbox.put(record)
        for done in finished:
            self._done.put(done)

    @staticmethod
    def _without(exc: RecordRefused, records: list[OutMessage],
                 finished: list[Done]) -> tuple[list[OutMessage], list[Done]]:
        """`records` and `finished` without the record Kafka refused for good: the report holding it is
        replaced by its minimal one (`Done.unsendable`), a lone lifecycle record is dropped. Nothing that can
        never be sent is tried again, and the other reports go out with the next transaction."""
        refused = exc.record
        size = len(refused.value or b"") + len(refused.key or b"")
        why = f"the report could not be published: a record for {refused.topic} ({size} bytes) was refused: " \
              f"{exc.args[0].str()}"
        if any(record is refused for record in records):
            log.error("dropping a record Kafka refused for good (%s)", why)
            return [r for r in records if r is not refused], finished
        for done in finished:
            if any(record is refused for record in done.records):
                log.error("replacing the report of %s@%d: %s", done.source, done.offset, why)
                done.records = done.unsendable(why) if done.unsendable is not None else []
                done.unsendable = None  # if its replacement is refused as well, the offset goes out bare
                break
        return records, finished


def dropped_reports(dropped: list[tuple[Source, int]]) -> str:
    """One line for the reports of tasks whose partition was revoked (`dropped`: (topic, partition), offset):
    after a broker outage they can be many, and one line each would bury the rest of the log."""
    by_source: dict[Source, list[int]] = {}
    for source, offset in dropped:
        by_source.setdefault(source, []).append(offset)
    parts = [f"{topic}[{partition}]@{min(offsets)}" + (f"..{max(offsets)} ({len(offsets)})" if len(offsets) > 1
                                                        else "")
             for (topic, partition), offsets in sorted(by_source.items())]
    return (f"dropping the report(s) of {len(dropped)} task(s) whose partition was revoked (the next owner runs "
            f"them again): {', '.join(parts)}")
