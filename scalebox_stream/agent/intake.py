"""What the poll thread does with a consumed message: skip it, park it as poison, or buffer it as a task.

A message already done (below the partition's watermark, or finished by a previous owner) is skipped. One that
is not a TaskCreated, or whose fields fail `policy.intake`'s check (ids, attempt, times, module, body and header
limits), goes to the dead-letter topic with its fault named, and is counted; if its app, module and task id are
this agent's own and sound, a TaskFailed naming the fault ends that task, so no projection shows it waiting. A
task whose attempt a previous owner was running when it went away (the partition's lease record says so) gets
that attempt recorded as lost, then runs as the next attempt, or fails once its attempts were lost
`max_lost_attempts` times.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError

from scalebox_stream.agent.checkpoint import Checkpoint, Done
from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import OutMessage, TaskMessage, TaskRunner
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.events import DecodeError, Event, EventCodec, now_us
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC
from scalebox_stream.policy.intake import MAX_ATTEMPT, TaskRecord, task_record_problem

log = logging.getLogger(__name__)

DEAD_LETTER_HEAD_BYTES = 64 * 1024
"""Bytes kept of a poison record's value when Kafka refuses it whole on the dead-letter topic."""
LOST_EXIT_CODE = 123
"""Scalebox's code for an attempt whose agent went away (its 'global timeout')."""


class Intake:
    """Turns consumed messages into buffered tasks (see the module docstring)."""

    def __init__(self, identity: AgentIdentity, codec: EventCodec, runner: TaskRunner, checkpoint: Checkpoint,
                 dispatcher: Dispatcher, telemetry: AgentTelemetry, max_lost_attempts: int) -> None:
        self.identity = identity
        self.codec = codec
        self.runner = runner
        self.checkpoint = checkpoint
        self.dispatcher = dispatcher
        self.telemetry = telemetry
        self.max_lost_attempts = max_lost_attempts
        self.poison_count = 0

    def on_message(self, message: Any) -> None:
        """(Poll thread) Take one consumed message (or partition end)."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            else:
                self.checkpoint.reached_end((message.topic(), message.partition()), message.offset())
            return
        tracker = self.checkpoint.trackers.get((message.topic(), message.partition()))
        if tracker is None or tracker.is_done(message.offset()):
            return
        try:
            event = self.codec.decode(message.value())
            if event.event_type != "TaskCreated":
                raise DecodeError(f"expected TaskCreated, got {event.event_type}")
        except DecodeError as exc:
            self._dead_letter(message, str(exc))
            return
        if problem := self._problem(event):
            self._dead_letter(message, f"invalid task: {problem}", self._failure(event, f"invalid task: {problem}"))
            return
        task = TaskMessage(event, message.topic(), message.partition(), message.offset(),
                           assignment=tracker.assignment)
        lost = tracker.lost_attempt(task.offset)
        if lost is not None:
            task = self._after_lost_attempt(task, lost)
            if task is None:
                return
        tracker.start(task.offset)
        self.dispatcher.add(task)

    def _problem(self, event: Event) -> str | None:
        """Why a decoded TaskCreated must not run here (see `policy.intake`), or None."""
        payload = event.payload
        record = TaskRecord(app=event.app, module=event.module, task_id=event.task_id, attempt=event.attempt,
                            body=payload["body"], headers=payload["headers"], not_before=payload.get("not_before"),
                            parent_task_id=payload.get("parent_task_id"))
        return task_record_problem(record, self.identity.app, self.identity.module, now_us())

    def _failure(self, event: Event, reason: str) -> list[OutMessage]:
        """The TaskFailed that ends a refused task in the projection, if its ids are this agent's own and sound
        (app, module, a UUID): a record that only looks like one of its tasks changes no task."""
        ids = TaskRecord(app=event.app, module=event.module, task_id=event.task_id, attempt=1, body="", headers={})
        if task_record_problem(ids, self.identity.app, self.identity.module, now_us()):
            return []
        attempt = min(max(event.attempt, 1), MAX_ATTEMPT)
        return [self.runner.failed(event.task_id, attempt, reason[:4096])]

    def _after_lost_attempt(self, task: TaskMessage, lost: int) -> TaskMessage | None:
        """Record the attempt a dead agent was running as lost; the next attempt, or None if given up."""
        created = task.event
        log.warning("task %s attempt %d was lost with its agent; recording it", created.task_id, lost)
        self.telemetry.attempt_lost()
        records = [self.runner.lost_report(created, lost, LOST_EXIT_CODE)]
        limit = self.max_lost_attempts
        if lost >= limit + created.attempt - 1:
            records.append(self.runner.failed(created.task_id, lost, f"lost {limit} times (agents died running it)"))
            self.checkpoint.trackers[task.source].start(task.offset)
            self.checkpoint.report(Done(task.source, task.offset, task.assignment, records, ran_in_slot=False))
            return None
        for record in records:
            self.checkpoint.put(record)
        return replace(task, event=replace(created, attempt=lost + 1))

    def _dead_letter(self, message: Any, reason: str, records: list[OutMessage] | None = None) -> None:
        """Park a message that must not run on the dead-letter topic (with `records`, e.g. its task's TaskFailed)
        and move on."""
        self.poison_count += 1
        self.telemetry.dead_letter()
        log.error("poison message %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), reason)
        headers = [("error", reason.encode()), ("source_topic", message.topic().encode()),
                   ("source_partition", str(message.partition()).encode()),
                   ("source_offset", str(message.offset()).encode()), ("agent", self.identity.agent_id.encode())]
        source = (message.topic(), message.partition())
        tracker = self.checkpoint.trackers[source]
        tracker.start(message.offset())
        record = OutMessage(DEAD_LETTER_TOPIC, message.key() or b"", message.value() or b"", headers)
        extra = records or []

        def cut(why: str) -> list[OutMessage]:  # a value Kafka will not take again: the head of it, marked
            value = (message.value() or b"")[:DEAD_LETTER_HEAD_BYTES]
            key = (message.key() or b"")[:1024]
            return [OutMessage(DEAD_LETTER_TOPIC, key, value, [*headers, ("truncated", why.encode()[:1024])]), *extra]

        self.checkpoint.report(Done(source, message.offset(), tracker.assignment, [record, *extra],
                                    ran_in_slot=False, unsendable=cut))
