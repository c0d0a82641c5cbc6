"""The agent: one consumer of a module's task topic, N slots, a poll loop that never blocks.

The poll thread owns the consumer and a transactional producer. Slots are worker threads that run one
attempt each. Whatever a slot produces (lifecycle events, the attempt's report, child tasks) is handed
back to the poll thread, which publishes it together with the partition watermarks in one Kafka
transaction, so a task's outputs, its events and its offset commit land together or not at all.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.offsets import PartitionTracker, parse_metadata
from scalebox_stream.agent.task_runner import OutMessage, TaskMessage, TaskRunner
from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.executors import make_executor
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, module_group, task_topic
from scalebox_stream.spec.model import AppSpec

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0


@dataclass
class AgentOptions:
    """Tunables of one agent."""

    slots: int
    work_root: Path
    grace_seconds: float = 30.0
    keep_work_dirs: bool = False
    consumer_overrides: dict = field(default_factory=dict)


@dataclass
class _Done:
    """A finished offset waiting to be published: an attempt that ran, or a dead-lettered message."""

    partition: int
    offset: int
    records: list[OutMessage]
    ran_in_slot: bool = True


class Agent:
    """Consumes one module's tasks and runs them in slots; see the module docstring."""

    def __init__(self, spec: AppSpec, identity: AgentIdentity, bootstrap: str, options: AgentOptions) -> None:
        self.spec = spec
        self.identity = identity
        self.options = options
        self.codec = EventCodec()
        self.module = spec.modules[identity.module]
        self.executor = make_executor(self.module.executor)
        self.runner = TaskRunner(spec, identity, self.executor, self.codec, options.work_root,
                                 options.keep_work_dirs)
        self.topic = task_topic(spec.name, identity.module)
        self.consumer = Consumer(consumer_config(
            bootstrap, module_group(spec.name, identity.module),
            **{"client.id": identity.agent_id, **options.consumer_overrides}))
        self.producer = Producer(producer_config(bootstrap, transactional_id=f"sbx-agent-{identity.agent_id}"))
        self.slots = ThreadPoolExecutor(max_workers=options.slots, thread_name_prefix="slot")
        self._free_slots: deque[int] = deque(range(options.slots))
        self._outbox: queue.SimpleQueue[OutMessage] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._trackers: dict[int, PartitionTracker] = {}
        self._waiting: deque[TaskMessage] = deque()
        self._in_flight = 0
        self._paused = False
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        self.poison_count = 0

    # ----- lifecycle -------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Stop taking tasks; in-flight ones get the grace period (signal-handler safe)."""
        self._stop.set()

    def run(self) -> None:
        """Run until a stop is requested, then drain and close."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.producer.init_transactions(30)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        self._lifecycle("started")
        log.info("agent %s serving %s with %d %s slot(s)", self.identity.agent_id, self.topic,
                 self.options.slots, self.executor.name)
        try:
            while not self._stop.is_set():
                self._step()
            self._drain()
        finally:
            self._lifecycle("stopped")
            self._publish()
            self.consumer.close()
            self.slots.shutdown(wait=False, cancel_futures=True)
            self.executor.close()

    def _step(self) -> None:
        """One turn of the poll loop: publish what finished, admit work, poll."""
        self._publish()
        self._start_waiting()
        self._pause_or_resume()
        message = self.consumer.poll(0.05 if self._in_flight else 0.2)
        if message is not None:
            self._on_message(message)
        if time.monotonic() - self._last_heartbeat > HEARTBEAT_SECONDS:
            self._lifecycle("heartbeat")

    def _drain(self) -> None:
        """Graceful stop: let in-flight tasks finish within the grace period, then hand the rest back."""
        self.consumer.pause(self.consumer.assignment())
        self._waiting.clear()
        deadline = time.monotonic() + self.options.grace_seconds
        while self._in_flight and time.monotonic() < deadline:
            self.consumer.poll(0.1)
            self._publish()
        self._publish()
        if self._in_flight:
            log.warning("%d task(s) still running after the grace period; they will be redelivered",
                        self._in_flight)

    def _lifecycle(self, state: str) -> None:
        self._last_heartbeat = time.monotonic()
        event = Event("AgentLifecycle", self.spec.name, {
            "agent": self.identity.agent_id, "state": state, "slots": self.options.slots,
            "executor": self.executor.name, "pid": os.getpid()},
            module=self.module.name, cluster=self.identity.cluster, host=self.identity.host,
            producer=self.identity.agent_id)
        self._outbox.put(OutMessage(EVENTS_TOPIC, self.identity.agent_id, self.codec.encode(event)))

    # ----- partitions --------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=30)
        for tp in committed:
            start = tp.offset if tp.offset >= 0 else 0
            self._trackers[tp.partition] = PartitionTracker(start, parse_metadata(start, tp.metadata))
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._publish()
        for tp in partitions:
            self._trackers.pop(tp.partition, None)
        self._waiting = deque(t for t in self._waiting if t.partition in self._trackers)

    def _pause_or_resume(self) -> None:
        full = self._in_flight + len(self._waiting) >= self.options.slots
        if full and not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        elif not full and self._paused:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False

    # ----- messages ----------------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        tracker = self._trackers.get(message.partition())
        if tracker is None:
            return
        if tracker.is_done(message.offset()):
            tracker.skip(message.offset())
            return
        try:
            event = self.codec.decode(message.value())
            if event.event_type != "TaskCreated":
                raise DecodeError(f"expected TaskCreated, got {event.event_type}")
        except DecodeError as exc:
            self._dead_letter(message, str(exc))
            return
        tracker.start(message.offset())
        self._waiting.append(TaskMessage(event, message.topic(), message.partition(), message.offset()))
        self._start_waiting()

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Park an undecodable message on the dead-letter topic and move on."""
        self.poison_count += 1
        log.error("poison message %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), reason)
        headers = [("error", reason.encode()), ("source_topic", message.topic().encode()),
                   ("source_partition", str(message.partition()).encode()),
                   ("source_offset", str(message.offset()).encode()), ("agent", self.identity.agent_id.encode())]
        self._trackers[message.partition()].start(message.offset())
        record = OutMessage(DEAD_LETTER_TOPIC, message.key() or b"", message.value() or b"", headers)
        self._done.put(_Done(message.partition(), message.offset(), [record], ran_in_slot=False))

    def _start_waiting(self) -> None:
        while self._waiting and self._free_slots and not self._stop.is_set():
            task = self._waiting.popleft()
            slot = self._free_slots.popleft()
            self._in_flight += 1
            accepted = self.runner.event("TaskAccepted", task.event.task_id, task.event.attempt, {
                "agent": self.identity.agent_id, "slot": slot, "topic": task.topic,
                "partition": task.partition, "offset": task.offset})
            self._outbox.put(self.runner.to_events(accepted))
            self.slots.submit(self._run_in_slot, task, slot)

    def _run_in_slot(self, task: TaskMessage, slot: int) -> None:
        try:
            records = self.runner.run(task, slot, self._outbox.put)
        except Exception:  # never lose the slot: the task is reported as an engine error
            log.exception("slot %d crashed on task %s", slot, task.event.task_id)
            records = []
        self._done.put(_Done(task.partition, task.offset, records))
        self._free_slots.append(slot)

    # ----- publishing --------------------------------------------------------------------------------

    def _publish(self) -> None:
        """Publish pending records and advance the watermarks, in one transaction."""
        finished: list[_Done] = []
        while not self._done.empty():
            finished.append(self._done.get())
        records: list[OutMessage] = []
        while not self._outbox.empty():
            records.append(self._outbox.get())
        if not finished and not records:
            return
        for done in finished:
            records.extend(done.records)
        try:
            self._transact(records, finished)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            log.error("transaction failed (%s); aborted, retrying", exc)
            self.producer.abort_transaction(30)
            for record in records[: len(records) - sum(len(d.records) for d in finished)]:
                self._outbox.put(record)
            for done in finished:
                self._done.put(done)
            time.sleep(0.5)
            return
        for done in finished:
            if done.ran_in_slot:
                self._in_flight -= 1

    def _transact(self, records: list[OutMessage], finished: list[_Done]) -> None:
        self.producer.begin_transaction()
        for record in records:
            self.producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers)
        if finished:
            for done in finished:
                tracker = self._trackers.get(done.partition)
                if tracker is not None:
                    tracker.finish(done.offset)
            offsets = [TopicPartition(self.topic, p, t.watermark, t.metadata()) for p, t in self._trackers.items()]
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
        self.producer.commit_transaction(60)
