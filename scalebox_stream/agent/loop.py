"""The agent: one consumer of a module's task topic, N slots, a poll loop that never blocks.

The poll thread owns the consumer and a transactional producer. It fetches tasks into a small buffer;
slots are worker threads that run one attempt at a time and, when one ends, take the next buffered task
themselves (so a slot never waits for the poll thread's transaction). Whatever a slot produces (lifecycle
events, the attempt's report, child tasks) is handed back to the poll thread, which publishes everything
that finished meanwhile together with the partition positions in one Kafka transaction, so a task's
outputs, its events and its offset commit land together or not at all. The commit metadata also records
which attempts are running (see `offsets`), which is how the next owner of a partition recognises the
attempts of an agent that died.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from scalebox_stream import metrics
from scalebox_stream.agent.admission import Admission
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.offsets import PartitionTracker, parse_metadata
from scalebox_stream.agent.task_runner import AttemptReport, OutMessage, TaskMessage, TaskRunner
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.events import DecodeError, Event, EventCodec, now_us
from scalebox_stream.executors import make_executor
from scalebox_stream.kafka.backlog import BacklogMonitor, BacklogWatcher
from scalebox_stream.kafka.config import admin_config, consumer_config, producer_config
from scalebox_stream.kafka.control import Command, CommandListener, send_command
from scalebox_stream.kafka.presence import PRESENCE_SECONDS, HostDirectory
from scalebox_stream.kafka.topics import (
    DEAD_LETTER_TOPIC,
    EVENTS_TOPIC,
    HOST_TOPIC_PARTITIONS,
    PRESENCE_TOPIC,
    ensure_app_topics,
    ensure_topics,
    module_group,
    task_topic,
)
from scalebox_stream.kafka.transactions import TransactionalPublisher, TransactionHung
from scalebox_stream.policy.admission import recheck_delay
from scalebox_stream.policy.budget import ErrorBudget
from scalebox_stream.policy.membership import absent_since, membership_evidence, must_rejoin
from scalebox_stream.policy.pacing import (
    due_at,
    held_until,
    may_fetch,
    others_running,
    pending_since,
    poll_wait,
    publish_due,
)
from scalebox_stream.spec.model import AppSpec

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
LOST_EXIT_CODE = 123
"""Scalebox's code for an attempt whose agent went away (its 'global timeout')."""
MAX_LOST_ATTEMPTS = 3
"""A task whose attempts are lost this many times (it may be killing its agents) fails."""
MAX_DELAYED = 1000
COMMITTED_TIMEOUT_S = 30.0
"""How long one request for the committed positions of assigned partitions may take."""
REVOKE_DRAIN_SECONDS = 10.0
"""How long a rebalance waits for the running tasks of revoked partitions to finish and be committed."""
BUFFER_MIN = 64
"""Tasks fetched ahead: each poll takes what brings the buffer to max(BUFFER_MIN, 8 per slot); a full buffer
is polled only now and then (one task at most); fetching pauses at 4 times that and resumes back at it.
Pausing is for slow tasks only: librdkafka fetches a resumed partition again only after up to a second.
Buffered tasks are not committed, so a crash loses none of them."""
SWITCH_INTERVAL_S = 0.0005
"""The interpreter's thread switch interval in an agent (Python's default is 5 ms)."""


@dataclass
class AgentOptions:
    """Tunables of one agent."""

    slots: int
    work_root: Path
    grace_seconds: float = 30.0
    keep_work_dirs: bool = False
    consumer_overrides: dict = field(default_factory=dict)
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (none when None)."""


@dataclass
class _Done:
    """A finished offset waiting to be published: an attempt that ran, or one that needed no run."""

    source: tuple[str, int]
    offset: int
    assignment: int
    records: list[OutMessage]
    ran_in_slot: bool = True
    outcome: str = ""


class Agent:
    """Consumes one module's tasks and runs them in slots; see the module docstring."""

    def __init__(self, spec: AppSpec, identity: AgentIdentity, bootstrap: str, options: AgentOptions) -> None:
        self.spec = spec
        self.identity = identity
        self.options = options
        self.bootstrap = bootstrap
        self.codec = EventCodec()
        self.module = spec.modules[identity.module]
        self.executor = make_executor(self.module.executor, container_mode=self.module.container_mode)
        self.directory = HostDirectory(bootstrap)
        self.runner = TaskRunner(spec, identity, self.executor, self.codec, options.work_root,
                                 options.keep_work_dirs, self.directory)
        self.topics = [task_topic(spec.name, identity.module),
                       task_topic(spec.name, identity.module, host=identity.host)]
        self.consumer = self._new_consumer()
        self._absent_since: float | None = None  # since when commits are refused as from a non-member
        self._stop = threading.Event()
        self.publisher = TransactionalPublisher(bootstrap, f"sbx-agent-{identity.agent_id}", stop=self._stop)
        self.slots = ThreadPoolExecutor(max_workers=options.slots, thread_name_prefix="slot")
        self._free_slots: deque[int] = deque(range(options.slots))
        self._outbox: queue.SimpleQueue[OutMessage] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._trackers: dict[tuple[str, int], PartitionTracker] = {}
        self._waiting: deque[TaskMessage] = deque()
        self._delayed: list[tuple[int, int, TaskMessage]] = []
        self._in_flight = 0
        self._buffer_target = max(BUFFER_MIN, 8 * options.slots)
        self._buffer_cap = 4 * self._buffer_target
        # Guards what slot threads and the poll thread both change: the buffer, free slots, counts, budget.
        self._dispatch = threading.RLock()
        self._records_since: float | None = None  # when queued lifecycle records were first seen
        self._offsets_since: float | None = None  # when positions first moved, unpublished
        self._last_start = 0.0
        self._last_publish: float | None = None  # when the last transaction ended
        self._last_fetch = 0.0  # when the consumer was last asked for messages
        self._offsets_dirty = False
        self._paused = False
        self._abandon = False
        self._last_heartbeat = 0.0
        self._last_presence = 0.0
        self.poison_count = 0
        self.assignments = 0
        self.budget = ErrorBudget.from_spec(self.module.error_budget) if self.module.error_budget else None
        self.suspended = False
        self.commands = CommandListener(bootstrap, spec.name, identity.module)
        locks = options.work_root.parent / "locks" / identity.host / f"{spec.name}.{self.module.name}"
        self.admission = Admission(self.module, {"APP": spec.name, "MODULE_NAME": self.module.name,
                                                 "HOST_NAME": identity.host, **self.module.environments}, locks)
        self._refused: queue.SimpleQueue[tuple[TaskMessage, str]] = queue.SimpleQueue()
        self._started: queue.SimpleQueue[TaskMessage] = queue.SimpleQueue()
        self._running_sources: Counter[tuple[str, int]] = Counter()
        # Only modules of this cluster: another cluster's backlog is not measured here (its copy of the topic
        # holds tasks whose consumers commit on the other cluster).
        bounds = {m: spec.modules[m].max_backlog for m in spec.sinks_of(self.module.name)
                  if spec.modules[m].max_backlog and spec.cluster_of(m) == spec.cluster_of(self.module.name)}
        self.downstream = BacklogWatcher(bootstrap, spec.name, bounds)
        self.telemetry = AgentTelemetry(identity)
        self.telemetry.watch(options.slots, busy=lambda: self._in_flight,
                             buffered=lambda: len(self._waiting) + len(self._delayed),
                             suspended=lambda: float(self.suspended), held=lambda: float(self._blocked_downstream()),
                             backlog=self._own_backlog)
        self._backlog_monitor: BacklogMonitor | None = None  # made by the first scrape that asks
        self._backlog_lock = threading.Lock()  # the scrape thread against the close at stop

    def _own_backlog(self) -> float:
        """(Scrape thread) Tasks of this module in Kafka not yet done by its agents; NaN if Kafka does not answer
        (a failing gauge would fail the whole scrape)."""
        with self._backlog_lock:
            if self._stop.is_set():
                return math.nan
            if self._backlog_monitor is None:
                self._backlog_monitor = BacklogMonitor(self.bootstrap)
            try:
                return float(self._backlog_monitor.backlog(self.spec.name, self.module.name))
            except KafkaException:
                return math.nan

    def _new_consumer(self) -> Consumer:
        return Consumer(consumer_config(
            self.bootstrap, module_group(self.spec.name, self.identity.module),
            **{"client.id": self.identity.agent_id, "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
               "topic.metadata.refresh.interval.ms": 5000, "enable.partition.eof": True,
               **self.options.consumer_overrides}))

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    # ----- lifecycle -------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Stop taking tasks; in-flight ones get the grace period (signal-handler safe)."""
        self._stop.set()

    def run(self) -> None:
        """Run until a stop is requested, then drain and close."""
        # A slot whose task just ended must not wait the default 5 ms for the interpreter lock while
        # another thread runs Python: that wait was longer than a short task.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        admin = AdminClient(admin_config(self.bootstrap))
        # The app's topics too: on another cluster than the app's home, nobody else may have made them yet, and
        # MirrorMaker 2 keeps partitions only into topics with as many of them.
        ensure_app_topics(admin, self.spec.name, list(self.spec.modules))
        ensure_topics(admin, {self.topics[1]: HOST_TOPIC_PARTITIONS, PRESENCE_TOPIC: 1})
        if self.options.metrics_port is not None:
            metrics.serve(self.options.metrics_port)
        self._subscribe()
        self._lifecycle("started")
        log.info("agent %s serving %s with %d %s slot(s)", self.identity.agent_id, " and ".join(self.topics),
                 self.options.slots, self.executor.name)
        try:
            while not self._stop.is_set():
                self._step()
            self._drain()
        finally:
            self._lifecycle("stopped")
            self._publish()
            self.consumer.close()
            self.commands.close()
            self.downstream.close()
            with self._backlog_lock:
                if self._backlog_monitor is not None:
                    self._backlog_monitor.close()
            self.directory.close()
            self.slots.shutdown(wait=False, cancel_futures=True)
            self.executor.close()
            if not self._in_flight:
                self.runner.remove_slot_work_dirs()
            log.info("agent %s stopped", self.identity.agent_id)

    def _step(self) -> None:
        """One turn of the poll loop: publish what finished, admit work, poll."""
        if self._publish_due():
            self._publish()
        self._obey_commands()
        if self._membership_lost():
            self._rejoin()
        self._release_due()
        self._start_waiting()
        self._pause_or_resume()
        for message in self._fetch():
            self._on_message(message)
        self._start_waiting()
        now = time.monotonic()
        if now - self._last_heartbeat > HEARTBEAT_SECONDS:
            self._lifecycle("heartbeat")
        elif now - self._last_presence > PRESENCE_SECONDS:
            self._announce("heartbeat")

    def _publish_due(self) -> bool:
        """Whether to publish now (see `policy.pacing`)."""
        now = time.monotonic()
        self._records_since = pending_since(not self._outbox.empty(), self._records_since, now)
        self._offsets_since = pending_since(self._offsets_dirty, self._offsets_since, now)
        finished, others = self._gap_state()
        return publish_due(finished > 0, self._records_since, self._offsets_since, now, others, self._last_publish)

    def _gap_state(self) -> tuple[int, bool]:
        """Reports waiting, and whether the transaction gap may hold them (see `pacing.others_running`)."""
        finished = self._done.qsize()
        return finished, others_running(finished, self._in_flight - finished)

    def _fetch(self) -> list[Message]:
        """What the consumer has fetched already, up to the buffer's target; else wait for one message. A full
        buffer is left alone (the loop just waits), but for a poll now and then (see `pacing.may_fetch`).

        (`consume` with a count waits for the whole count or the timeout: it would hold back a lone task.)"""
        now = time.monotonic()
        room = self._buffer_target - len(self._waiting)
        if not may_fetch(room, now - self._last_fetch):
            self._stop.wait(self._poll_wait(now))
            return []
        self._last_fetch = now
        messages = self.consumer.consume(max(1, room), 0)
        if messages:
            return messages
        message = self.consumer.poll(self._poll_wait(now))
        return [] if message is None else [message]

    def _poll_wait(self, now: float) -> float:
        """How long the loop may wait now (see `pacing.poll_wait`)."""
        running = bool(self._in_flight or self._delayed)
        finished, others = self._gap_state()
        held = held_until(finished > 0 or self._records_since is not None, others, self._last_publish)
        return poll_wait(running, self._last_start, now, due_at(self._records_since, self._offsets_since), held)

    def _drain(self) -> None:
        """Graceful stop: let running tasks finish within the grace period, then hand the rest back."""
        self.consumer.pause(self.consumer.assignment())
        with self._dispatch:
            self._waiting.clear()
        self._delayed.clear()
        deadline = time.monotonic() + self.options.grace_seconds
        while self._in_flight and time.monotonic() < deadline:
            self.consumer.poll(0.1)
            self._publish()
        if self._in_flight:
            log.warning("%d task(s) still running after the %.0fs grace period: killed and handed back",
                        self._in_flight, self.options.grace_seconds)
            self._abandon = True
            self.executor.abort()
        self._publish()

    def _lifecycle(self, state: str) -> None:
        """Record a lifecycle state on the events topic (and as this agent's presence)."""
        self._last_heartbeat = time.monotonic()
        self._outbox.put(OutMessage(EVENTS_TOPIC, self.identity.agent_id, self._announce(state)))

    def _announce(self, state: str) -> bytes:
        """Renew this agent's presence record (see `kafka.presence`); returns the encoded AgentLifecycle."""
        self._last_presence = time.monotonic()
        event = Event("AgentLifecycle", self.spec.name, {
            "agent": self.identity.agent_id, "state": state, "slots": self.options.slots,
            "executor": self.executor.name, "pid": os.getpid()},
            module=self.module.name, cluster=self.identity.cluster, host=self.identity.host,
            producer=self.identity.agent_id)
        value = self.codec.encode(event)
        self._outbox.put(OutMessage(PRESENCE_TOPIC, self.identity.agent_id, value))
        return value

    # ----- partitions --------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:  # a replaced consumer closing (see _rejoin)
            return
        self.assignments += 1
        self._absent_since = None  # a membership of its own
        log.info("partitions assigned: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        for tp in self._committed(consumer, partitions):
            start = tp.offset if tp.offset >= 0 else 0
            self._trackers[(tp.topic, tp.partition)] = PartitionTracker(start, parse_metadata(start, tp.metadata),
                                                                        assignment=self.assignments)
        # librdkafka keeps a partition's pause flag across revoke and re-assignment: set it explicitly.
        (consumer.pause if self._paused else consumer.resume)(partitions)

    def _committed(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed positions of newly assigned partitions; asked again while the broker cannot
        answer (it may be restarting: its coordinator takes a while to load), until the agent is told to stop.
        (Raised from the assignment callback, the error ended the agent.)"""
        while True:
            try:
                return consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
            except KafkaException as exc:
                if self._stop.is_set():
                    raise
                log.warning("committed positions of the assigned partitions not available (%s); asking again",
                            exc.args[0].str())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give partitions back: let their running tasks finish (within a budget) and commit, then let go."""
        if consumer is not self.consumer:
            return
        log.info("partitions revoked: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        with self._dispatch:  # no slot may start another task of theirs
            self._waiting = deque(t for t in self._waiting if t.source not in revoked)
        deadline = time.monotonic() + (0 if self._stop.is_set() else REVOKE_DRAIN_SECONDS)
        self._publish()
        while any(self._running_sources[s] for s in revoked) and time.monotonic() < deadline:
            time.sleep(0.02)
            self._publish()
        if any(self._running_sources[s] for s in revoked):
            log.warning("tasks still running on revoked partitions: the next owner will run them again")
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke (session lost): nothing of theirs may be committed."""
        if consumer is not self.consumer:
            return
        log.warning("partitions lost: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        self._forget(partitions)

    def _note_membership(self, present: bool | None) -> None:
        """Take what a transaction said about this agent's membership (see `policy.membership`)."""
        self._absent_since = absent_since(present, self._absent_since, time.monotonic())

    def _membership_lost(self) -> bool:
        return must_rejoin(self._absent_since, time.monotonic())

    def _rejoin(self) -> None:
        """The broker has refused this agent's commits as from a non-member for a long while, yet the consumer
        has not noticed (see `policy.membership`): treat its partitions as lost and join again with a fresh
        consumer. The old one is closed on a thread of its own, abandoned if it never returns."""
        refused_s = 0.0 if self._absent_since is None else time.monotonic() - self._absent_since
        log.error("the broker has refused agent %s's commits as from a non-member of its group for %.0fs; "
                  "joining again with a new consumer", self.identity.agent_id, refused_s)
        held = [TopicPartition(topic, partition) for topic, partition in self._trackers]
        self._forget(held)
        stale, self.consumer, self._absent_since = self.consumer, self._new_consumer(), None
        self._subscribe()
        threading.Thread(target=_close_quietly, args=(stale,), name="stale-consumer", daemon=True).start()

    def _forget(self, partitions: list[TopicPartition]) -> None:
        try:  # a partition given up while paused would come back paused (see _on_assign)
            self.consumer.resume(partitions)
        except KafkaException as exc:
            log.debug("resuming partitions given up: %s", exc)
        with self._dispatch:
            for tp in partitions:
                self._trackers.pop((tp.topic, tp.partition), None)
            self._waiting = deque(t for t in self._waiting if t.source in self._trackers)
        self._delayed = [d for d in self._delayed if d[2].source in self._trackers]
        heapq.heapify(self._delayed)

    def _pause_or_resume(self) -> None:
        """Pause fetching when enough tasks wait in memory, resume when few are left (hysteresis).

        Pausing per task would be ruinous: after a resume librdkafka fetches again only after a delay.
        Tasks buffered here are uncommitted, so a crash loses none of them.
        """
        hold = self.suspended or self._blocked_downstream() or len(self._delayed) >= MAX_DELAYED
        buffered = len(self._waiting)
        if not self._paused and (hold or buffered >= self._buffer_cap):
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        elif self._paused and not hold and buffered <= self._buffer_target:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False

    # ----- messages ----------------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            elif (tracker := self._trackers.get((message.topic(), message.partition()))) is not None:
                self._offsets_dirty |= tracker.reached_end(message.offset())
            return
        tracker = self._trackers.get((message.topic(), message.partition()))
        if tracker is None or tracker.is_done(message.offset()):
            return
        try:
            event = self.codec.decode(message.value())
            if event.event_type != "TaskCreated":
                raise DecodeError(f"expected TaskCreated, got {event.event_type}")
        except DecodeError as exc:
            self._dead_letter(message, str(exc))
            return
        task = TaskMessage(event, message.topic(), message.partition(), message.offset(),
                           assignment=tracker.assignment)
        lost = tracker.lost_attempt(task.offset)
        if lost is not None:
            task = self._after_lost_attempt(task, lost)
            if task is None:
                return
        tracker.start(task.offset)
        not_before = task.event.payload.get("not_before")
        if not_before and not_before > now_us():
            heapq.heappush(self._delayed, (not_before, task.offset, task))
        else:
            self._waiting.append(task)

    def _after_lost_attempt(self, task: TaskMessage, lost: int) -> TaskMessage | None:
        """Record the attempt a dead agent was running as lost; the next attempt, or None if given up."""
        created = task.event
        log.warning("task %s attempt %d was lost with its agent; recording it", created.task_id, lost)
        self.telemetry.attempt_lost()
        records = [self.runner.lost_report(created, lost, LOST_EXIT_CODE)]
        if lost >= MAX_LOST_ATTEMPTS + created.attempt - 1:
            records.append(self.runner.to_events(self.runner.event("TaskFailed", created.task_id, lost, {
                "attempts": lost, "reason": f"lost {MAX_LOST_ATTEMPTS} times (agents died running it)"})))
            self._trackers[task.source].start(task.offset)
            self._done.put(_Done(task.source, task.offset, task.assignment, records, ran_in_slot=False))
            return None
        for record in records:
            self._outbox.put(record)
        return replace(task, event=replace(created, attempt=lost + 1))

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Park an undecodable message on the dead-letter topic and move on."""
        self.poison_count += 1
        self.telemetry.dead_letter()
        log.error("poison message %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), reason)
        headers = [("error", reason.encode()), ("source_topic", message.topic().encode()),
                   ("source_partition", str(message.partition()).encode()),
                   ("source_offset", str(message.offset()).encode()), ("agent", self.identity.agent_id.encode())]
        source = (message.topic(), message.partition())
        self._trackers[source].start(message.offset())
        record = OutMessage(DEAD_LETTER_TOPIC, message.key() or b"", message.value() or b"", headers)
        self._done.put(_Done(source, message.offset(), self._trackers[source].assignment, [record], ran_in_slot=False))

    def _release_due(self) -> None:
        while not self._refused.empty():
            task, reason = self._refused.get()
            with self._dispatch:
                self._in_flight -= 1
                self._running_sources[task.source] -= 1
            if not self._holds(task.source, task.assignment):
                continue  # its partition was given up meanwhile
            task = replace(task, refusals=task.refusals + 1)
            delay = recheck_delay(task.refusals)
            log.info("task %s not admitted (%s); re-check in %.1fs", task.event.task_id, reason, delay)
            heapq.heappush(self._delayed, (now_us() + int(delay * 1e6), task.offset, task))
        now = now_us()
        while self._delayed and self._delayed[0][0] <= now:
            self._waiting.append(heapq.heappop(self._delayed)[2])

    def _holds(self, source: tuple[str, int], assignment: int) -> bool:
        """Whether the partition is still held under the same assignment (a task came with it)."""
        tracker = self._trackers.get(source)
        return tracker is not None and tracker.assignment == assignment

    def _blocked_downstream(self) -> bool:
        """Backpressure: a module this one feeds has more tasks waiting than its `max_backlog`."""
        return self.downstream.over_bound() is not None

    def _start_waiting(self) -> None:
        """(Poll thread) Start buffered tasks on the free slots."""
        while (pick := self._next_task()) is not None:
            self.slots.submit(self._run_in_slot, *pick)

    def _next_task(self, slot: int | None = None) -> tuple[TaskMessage, int] | None:
        """Take the next buffered task and a slot (`slot`, freed by its caller, or any free one), counted
        as started; None if no task may start now (then `slot` is back among the free ones)."""
        with self._dispatch:
            if slot is not None:
                self._free_slots.append(slot)
            if (not self._waiting or not self._free_slots or self._stop.is_set() or self.suspended
                    or self._blocked_downstream()):
                return None
            task = self._waiting.popleft()
            slot = self._free_slots.pop() if slot is not None else self._free_slots.popleft()
            self._last_start = time.monotonic()
            self._in_flight += 1
            self._running_sources[task.source] += 1
        if task.refusals == 0:  # reported by its TaskStarted: one event less per task (see TaskRunner.run)
            task = replace(task, accepted_at=now_us())
        self.downstream.note_started()
        return task, slot

    def _run_in_slot(self, task: TaskMessage, slot: int) -> None:
        """(Slot thread) Run the task, then the next buffered ones, until none may start."""
        pick: tuple[TaskMessage, int] | None = (task, slot)
        try:
            while pick is not None:
                self._run_attempt(*pick)
                pick = self._next_task(pick[1])
        except Exception:  # a bug here would otherwise vanish into the slot's future
            log.exception("slot %d stopped taking tasks", slot)
            raise

    def _run_attempt(self, task: TaskMessage, slot: int) -> None:
        token = None
        began: float | None = None
        try:
            if self.admission.active:
                verdict, token = self.admission.check(task.event)
                if not verdict.admitted:  # it waits: say now that it was accepted
                    if task.accepted_at is not None:
                        self._outbox.put(self.runner.accepted(task, slot))
                        task = replace(task, accepted_at=None)
                    self._refused.put((task, verdict.reason))
                    self.telemetry.admission_refused()
                    return
            self._started.put(task)
            self.telemetry.attempt_started()
            began = time.perf_counter()
            report = self.runner.run(task, slot, self._outbox.put)
        except Exception:  # never lose the slot: the attempt stays unreported and will be redelivered
            log.exception("slot %d crashed on task %s", slot, task.event.task_id)
            report = AttemptReport([], "error")
        finally:
            self.admission.release(token)
        if began is not None:
            self.telemetry.attempt_finished(report.outcome, time.perf_counter() - began)
        if not self._abandon:
            self._count_against_budget(report.outcome)  # before this slot may take another task
            self._done.put(_Done(task.source, task.offset, task.assignment, report.records, outcome=report.outcome))

    # ----- publishing --------------------------------------------------------------------------------

    def _publish(self) -> None:
        """Publish pending records and the partition positions, in one transaction."""
        while not self._started.empty():
            task = self._started.get()
            if self._holds(task.source, task.assignment):
                self._trackers[task.source].mark_running(task.offset, task.event.attempt)
        finished: list[_Done] = []
        while not self._done.empty():
            done = self._done.get()
            if self._holds(done.source, done.assignment):
                finished.append(done)
                continue
            # The partition moved to another agent (or came back to this one since), which sees this attempt
            # as lost and runs it again: publishing these outputs too would duplicate them.
            log.warning("dropping the report of %s@%d: the partition was revoked", done.source, done.offset)
            if done.ran_in_slot:
                with self._dispatch:
                    self._in_flight -= 1
                    self._running_sources[done.source] -= 1
        records: list[OutMessage] = []
        while not self._outbox.empty():
            records.append(self._outbox.get())
        self._records_since = self._offsets_since = None
        if not finished and not records and not self._offsets_dirty:
            return
        self._offsets_dirty = False
        began = time.perf_counter()
        try:
            if self._transact(records + [r for d in finished for r in d.records], finished):
                self._note_membership(membership_evidence(True))
        except (KafkaException, TransactionHung) as exc:
            self.telemetry.transaction(time.perf_counter() - began, committed=False)
            self._recover(exc, records, finished)
            return
        finally:
            self._last_publish = time.monotonic()
        self.telemetry.transaction(time.perf_counter() - began, committed=True)
        with self._dispatch:
            for done in finished:
                if done.ran_in_slot:
                    self._in_flight -= 1
                    self._running_sources[done.source] -= 1

    # ----- error budget and commands -----------------------------------------------------------------

    def _count_against_budget(self, outcome: str) -> None:
        """(Slot thread) Count an attempt's outcome; suspend the module when the budget is spent."""
        if self.budget is None:
            return
        with self._dispatch:
            if self.suspended or self.budget.state.tripped or not self.budget.record(outcome, time.time()).tripped:
                return
            reason = (f"error budget spent: {self.budget.max_failures} failed attempts within "
                      f"{self.budget.window_s:g}s")
            log.error("suspending module %s: %s", self.module.name, reason)
            producer = Producer(producer_config(self.bootstrap))
            send_command(producer, Command(self.spec.name, self.module.name, "suspend", reason))
            producer.flush(10)
            self._set_suspended(True, reason)

    def _obey_commands(self) -> None:
        for command in self.commands.poll():
            with self._dispatch:
                if command.command == "suspend" and not self.suspended:
                    self._set_suspended(True, command.reason or "suspended by command")
                elif command.command == "resume" and self.suspended:
                    if self.budget is not None:
                        self.budget.resume()
                    self._set_suspended(False, command.reason or "resumed by command")

    def _set_suspended(self, suspended: bool, reason: str) -> None:
        self.suspended = suspended
        log.warning("module %s %s: %s", self.module.name, "suspended" if suspended else "resumed", reason)
        self._outbox.put(self.runner.to_events(Event(
            "ModuleState", self.spec.name, {"state": "suspended" if suspended else "resumed", "reason": reason,
                                            "agent": self.identity.agent_id},
            module=self.module.name, task_id=f"module:{self.module.name}", cluster=self.identity.cluster,
            host=self.identity.host, producer=self.identity.agent_id)))

    def _transact(self, records: list[OutMessage], finished: list[_Done]) -> bool:
        """Publish `records` with the positions that count `finished` as done; the trackers take those
        positions only once the transaction has committed (a failed one leaves them as they were, so no
        later commit can count a task done whose report is not published). True if positions were committed."""
        changed = {d.source: self._trackers[d.source].copy() for d in finished if d.source in self._trackers}
        for done in finished:
            if done.source in changed:
                changed[done.source].finish(done.offset)
        trackers = {**self._trackers, **changed}
        # Only positions that differ from what this agent committed last: the others are stored already, and
        # each one costs the transaction an offset record.
        moved = {source: position for source, t in trackers.items() if (position := t.position()) != t.committed}
        offsets = [TopicPartition(topic, p, watermark, metadata) for (topic, p), (watermark, metadata) in moved.items()]
        self.publisher.publish(records, offsets, self.consumer.consumer_group_metadata() if offsets else None)
        self._trackers.update(changed)
        for source, position in moved.items():
            self._trackers[source].committed = position
        return bool(offsets)

    def _recover(self, exc: Exception, records: list[OutMessage], finished: list[_Done]) -> None:
        """Abort, keep everything for the next try; a fatal producer error gets a new producer."""
        log.error("transaction failed (%s); retrying", exc)
        self._note_membership(membership_evidence(False, exc.args[0].code() if isinstance(exc, KafkaException)
                                                  else None))
        if isinstance(exc, KafkaException) and exc.args[0].fatal():
            log.warning("replacing the producer after a fatal error")
            self.publisher.replace()
        elif isinstance(exc, KafkaException):
            self.publisher.abort()
        for record in records:
            self._outbox.put(record)
        for done in finished:
            self._done.put(done)
        time.sleep(0.5)


def _close_quietly(consumer: Consumer) -> None:
    """Close a consumer that was replaced; whatever it says, it no longer matters."""
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.info("closing the replaced consumer: %s", exc)
