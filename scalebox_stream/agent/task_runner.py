"""Runs one attempt of one task under the module contract and says what to publish afterwards."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.perspective import cap_text, read_perspective
from scalebox_stream.agent.sink import SinkLineError, SinkMessage, parse_sink_file
from scalebox_stream.events import Event, EventCodec, child_task_id, now_us
from scalebox_stream.executors.base import ExecRequest, ExecResult, Executor
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic
from scalebox_stream.policy.outcome import AttemptVerdict, decide
from scalebox_stream.spec.model import AppSpec, ModuleSpec

log = logging.getLogger(__name__)



class OutMessage(NamedTuple):
    """One record to produce."""

    topic: str
    key: str | bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@dataclass(frozen=True)
class TaskMessage:
    """A task as consumed from its topic."""

    event: Event
    topic: str
    partition: int
    offset: int


class TaskRunner:
    """Turns a TaskCreated event into an executed attempt and the records that report it."""

    def __init__(self, spec: AppSpec, identity: AgentIdentity, executor: Executor, codec: EventCodec,
                 work_root: Path, keep_work_dirs: bool = False) -> None:
        self.spec = spec
        self.module: ModuleSpec = spec.modules[identity.module]
        self.identity = identity
        self.executor = executor
        self.codec = codec
        self.work_root = work_root
        self.keep_work_dirs = keep_work_dirs

    def event(self, event_type: str, task_id: str, attempt: int, payload: dict, **kw: str) -> Event:
        """An event stamped with this agent's identity."""
        return Event(event_type, self.spec.name, payload, module=kw.get("module", self.module.name),
                     task_id=task_id, attempt=attempt, cluster=self.identity.cluster,
                     host=self.identity.host, producer=self.identity.agent_id)

    def to_events(self, event: Event) -> OutMessage:
        """The record that puts an event on the events topic."""
        return OutMessage(EVENTS_TOPIC, event.task_id, self.codec.encode(event))

    def run(self, task: TaskMessage, slot: int, publish: Callable[[OutMessage], None]) -> list[OutMessage]:
        """Run the attempt; `publish` sends lifecycle events early; returns the final records."""
        created = task.event
        work_dir = self._fresh_work_dir(created.task_id, created.attempt)
        request = self._request(created, slot, work_dir)
        started_at = now_us()

        def on_started(container_id: str | None) -> None:
            nonlocal started_at
            started_at = now_us()
            publish(self.to_events(self.event("TaskStarted", created.task_id, created.attempt, {
                "agent": self.identity.agent_id, "slot": slot, "executor": self.executor.name,
                "image": self.module.image, "container_id": container_id, "started_at": started_at})))

        try:
            result = self.executor.run(request, on_started)
        except Exception as exc:  # an executor bug must not kill the agent; record it instead
            log.exception("executor failed on task %s", created.task_id)
            result = ExecResult(exit_code=125, error=f"executor failure: {exc}")
        try:
            return self._report(created, slot, work_dir, result, started_at)
        finally:
            if not self.keep_work_dirs:
                shutil.rmtree(work_dir, ignore_errors=True)

    def _fresh_work_dir(self, task_id: str, attempt: int) -> Path:
        path = self.work_root / self.spec.name / self.module.name / f"{task_id}.{attempt}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _request(self, created: Event, slot: int, work_dir: Path) -> ExecRequest:
        headers = created.payload["headers"]
        sinks = self.spec.sinks_of(self.module.name)
        env = {
            "APP": self.spec.name, "MODULE_NAME": self.module.name, "TASK_ID": created.task_id,
            "ATTEMPT": str(created.attempt), "SLOT": str(slot), "LOCAL_IP": self.identity.ip,
            "HOST_NAME": self.identity.host, "CLUSTER": self.identity.cluster,
            "SINK_MODULE": sinks[0] if sinks else "", "FROM_MODULE": headers.get("from_module", ""),
            "OUTPUT_TEXT_SIZE": str(self.module.output_text_size),
            "TEXT_TRUNC_MODE": self.module.text_trunc_mode,
        }
        if self.module.task_max_seconds:
            env["TASK_MAX_SECONDS"] = f"{self.module.task_max_seconds:g}"
        env.update(self.module.environments)
        argv = [*self.module.command, created.payload["body"], json.dumps(headers, separators=(",", ":"))]
        name = f"sbx-{self.spec.name}-{self.module.name}-{created.task_id}-{created.attempt}"
        labels = {"scalebox.app": self.spec.name, "scalebox.module": self.module.name,
                  "scalebox.task_id": created.task_id, "scalebox.agent": self.identity.agent_id}
        return ExecRequest(argv=argv, env=env, work_dir=work_dir, name=name, image=self.module.image,
                           volumes=list(self.module.volumes), timeout_s=self.module.task_max_seconds,
                           labels=labels, keep_output_bytes=self.module.output_text_size)

    def _children(self, created: Event, messages: list[SinkMessage]) -> tuple[list[Event], str | None]:
        """TaskCreated events for the emitted messages, or an error if one has nowhere to go."""
        default = self.spec.sinks_of(self.module.name)
        children = []
        for position, message in enumerate(messages):
            target = message.module or (default[0] if default else None)
            if target is None:
                return [], f"output {position + 1} has no module: {self.module.name} has no sink_modules " \
                           "and the app has no main_router"
            headers = {**message.headers, "from_module": self.module.name,
                       "from_host": self.identity.host, "from_ip": self.identity.ip}
            child_id = child_task_id(created.task_id, position)
            children.append(Event("TaskCreated", self.spec.name, {
                "body": message.body, "headers": headers, "parent_task_id": created.task_id,
                "not_before": None, "topic": task_topic(self.spec.name, target)},
                module=target, task_id=child_id, attempt=1, cluster=self.identity.cluster,
                host=self.identity.host, producer=self.identity.agent_id))
        return children, None

    def _report(self, created: Event, slot: int, work_dir: Path, result: ExecResult,
                started_at: int) -> list[OutMessage]:
        perspective = read_perspective(work_dir)
        error = result.error
        children: list[Event] = []
        if result.exit_code == 0 and not result.timed_out and not error:
            sink_file = work_dir / "sink-tasks.txt"
            try:
                text = sink_file.read_text(errors="backslashreplace") if sink_file.exists() else ""
                children, error = self._children(created, parse_sink_file(text, self.spec.modules))
            except SinkLineError as exc:
                error = str(exc)
        verdict = decide(self.module.retry_rules, created.attempt, result.exit_code, result.timed_out, error)
        cap, mode = self.module.output_text_size, self.module.text_trunc_mode
        problems = "; ".join(perspective.problems) or None
        finished = self.event("TaskFinished", created.task_id, created.attempt, {
            "agent": self.identity.agent_id, "slot": slot, "executor": self.executor.name,
            "image": self.module.image, "container_id": result.container_id,
            "outcome": verdict.outcome, "exit_code": result.exit_code, "signal": result.signal,
            "timed_out": result.timed_out, "error": error or problems,
            "stdout": cap_text(result.stdout, cap, mode), "stderr": cap_text(result.stderr, cap, mode),
            "custom_out": cap_text(perspective.custom_out, cap, mode),
            "message_text": perspective.message_text,
            "stdout_bytes": len(result.stdout) if result.stdout_total is None else result.stdout_total,
            "stderr_bytes": len(result.stderr) if result.stderr_total is None else result.stderr_total,
            "status_code": perspective.status_code,
            "input_bytes": perspective.input_bytes, "output_bytes": perspective.output_bytes,
            "read_bytes": result.read_bytes, "write_bytes": result.write_bytes,
            "cpu_user_s": result.cpu_user_s, "cpu_system_s": result.cpu_system_s,
            "peak_memory_bytes": result.peak_memory_bytes,
            "started_at": result.started_at_us or started_at, "finished_at": result.finished_at_us or now_us(),
            "user_timestamps": [{"at": at, "label": label} for at, label in perspective.timestamps],
            "emitted_task_ids": [c.task_id for c in children],
            "emitted_modules": [c.module for c in children],
        })
        records = [self.to_events(finished)]
        for child in children:
            value = self.codec.encode(child)
            records.append(OutMessage(child.payload["topic"], child.task_id, value))
            records.append(OutMessage(EVENTS_TOPIC, child.task_id, value))
        records.extend(self._follow_up(created, verdict, result.exit_code, error))
        return records

    def _follow_up(self, created: Event, verdict: AttemptVerdict, exit_code: int,
                   error: str | None) -> list[OutMessage]:
        """A retry (the same task as attempt n+1) or the terminal event."""
        task_id, attempt = created.task_id, created.attempt
        if verdict.retry:
            retry = self.event("TaskRetryScheduled", task_id, attempt,
                               {"rule": verdict.rule, "delay_s": 0.0, "next_attempt": attempt + 1})
            again = Event("TaskCreated", self.spec.name, dict(created.payload), module=self.module.name,
                          task_id=task_id, attempt=attempt + 1, cluster=self.identity.cluster,
                          host=self.identity.host, producer=self.identity.agent_id)
            topic = created.payload["topic"] or task_topic(self.spec.name, self.module.name)
            return [self.to_events(retry), OutMessage(topic, task_id, self.codec.encode(again))]
        if verdict.outcome == "succeeded":
            return [self.to_events(self.event("TaskSucceeded", task_id, attempt, {"attempts": attempt}))]
        reason = f"{verdict.outcome}: exit code {exit_code}" + (f"; {error}" if error else "")
        return [self.to_events(self.event("TaskFailed", task_id, attempt, {"attempts": attempt,
                                                                             "reason": reason}))]
