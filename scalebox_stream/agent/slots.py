"""The slot threads: each runs one attempt at a time and, when it ends, takes the next waiting task itself.

A slot checks admission, runs the attempt, counts its outcome against the error budget and hands its report to
the commit unit; all of it is local or queued, so a slot never waits for the poll thread's transaction. An
attempt that raises anywhere on the way still ends in a report (an error naming the cause, under the retry
rules), and each report comes with the minimal one that replaces it if Kafka can never take it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from scalebox_stream.agent.admission import Admission
from scalebox_stream.agent.checkpoint import Checkpoint, Done
from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.agent.task_runner import AttemptReport, OutMessage, TaskMessage
from scalebox_stream.agent.telemetry import AgentTelemetry

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What a slot needs of `task_runner.TaskRunner`."""

    def run(self, task: TaskMessage, slot: int, publish: object) -> AttemptReport: ...

    def accepted(self, task: TaskMessage, slot: int) -> OutMessage: ...

    def crash_report(self, task: TaskMessage, slot: int, cause: BaseException | str,
                     may_retry: bool = True) -> AttemptReport: ...


class Slots:
    """A pool of `count` slot threads fed by the dispatcher."""

    def __init__(self, count: int, dispatcher: Dispatcher, runner: Runner, admission: Admission,
                 checkpoint: Checkpoint, control: ModuleControl, telemetry: AgentTelemetry) -> None:
        self.dispatcher = dispatcher
        self.runner = runner
        self.admission = admission
        self.checkpoint = checkpoint
        self.control = control
        self.telemetry = telemetry
        self.abandoned = False
        """Set when a stop kills what still runs: those attempts are handed back unreported."""
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="slot")

    def start_waiting(self) -> None:
        """(Poll thread) Start waiting tasks on the free slots."""
        while (pick := self.dispatcher.next_task()) is not None:
            self._pool.submit(self._run_in_slot, *pick)

    def shutdown(self) -> None:
        """Stop the pool without waiting for what still runs."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run_in_slot(self, task: TaskMessage, slot: int) -> None:
        """(Slot thread) Run the task, then the next waiting ones, until none may start."""
        pick: tuple[TaskMessage, int] | None = (task, slot)
        try:
            while pick is not None:
                self._run_attempt(*pick)
                pick = self.dispatcher.next_task(pick[1])
            self.checkpoint.slot_freed()
        except Exception:  # a bug here would otherwise vanish into the slot's future
            log.exception("slot %d stopped taking tasks", slot)
            raise

    def _run_attempt(self, task: TaskMessage, slot: int) -> None:
        """Admit and run one attempt; whatever raises on the way, the task is reported (see `crash_report`)."""
        token = None
        began: float | None = None
        checkpoint = self.checkpoint
        try:
            if self.admission.active:
                verdict, token = self.admission.check(task.event, slot)
                if not verdict.admitted:  # it waits: say now that it was accepted
                    if task.accepted_at is not None:
                        checkpoint.put(self.runner.accepted(task, slot))
                        task = replace(task, accepted_at=None)
                    self.dispatcher.refuse(task, verdict.reason)
                    self.telemetry.admission_refused()
                    return
            checkpoint.mark_started(task)
            self.telemetry.attempt_started()
            began = time.perf_counter()
            report = self.runner.run(task, slot, checkpoint.put)
        except Exception as exc:  # never lose the slot, nor the task: it ends with an error naming the cause
            log.exception("slot %d crashed on task %s", slot, task.event.task_id)
            report = self.runner.crash_report(task, slot, exc)
        finally:
            self._release(token)
        if began is not None:
            self.telemetry.attempt_finished(report.outcome, time.perf_counter() - began)
        if not self.abandoned:
            self.control.count(report.outcome)  # before this slot may take another task
            if began is not None:
                self.control.timed(slot, time.perf_counter() - began)
            checkpoint.report(Done(task.source, task.offset, task.assignment, report.records, outcome=report.outcome,
                                   unsendable=self._unsendable(task, slot)))

    def _release(self, token: int | None) -> None:
        try:
            self.admission.release(token)
        except Exception:  # a host token that cannot be closed must not cost the attempt its report
            log.exception("could not release the host token %s", token)

    def _unsendable(self, task: TaskMessage, slot: int) -> Callable[[str], list[OutMessage]]:
        """What replaces the task's report if Kafka can never take it: its minimal error report."""
        return lambda reason: self.runner.crash_report(task, slot, reason, may_retry=False).records
