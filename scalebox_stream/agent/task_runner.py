"""Runs one attempt of one task under the module contract and says what to publish afterwards."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from scalebox_stream.agent.contract import ModuleContract
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.limits import bare_result, oversized
from scalebox_stream.agent.outputs import Children, NoSinkError, OutputRouter
from scalebox_stream.agent.perspective import (
    Perspective,
    cap_text,
    extra_attributes_json,
    listing,
    read_perspective,
    storable,
)
from scalebox_stream.agent.secrets import Redactor, SecretError, read_secrets
from scalebox_stream.agent.sink import OUTPUT_FILES, SinkLineError, read_outputs
from scalebox_stream.agent.tools import REQUESTS_FIFO, Caller, ToolChannel, ToolHandler, ToolServer
from scalebox_stream.agent.workfiles import REMOVED_FILES, ProgramView, program_view, remove_listed_files
from scalebox_stream.events import (
    Event,
    EventCodec,
    EventStamp,
    TaskAccepted,
    TaskFailed,
    TaskFinished,
    TaskRetryScheduled,
    TaskStarted,
    UserTimestamp,
    now_us,
)
from scalebox_stream.executors.base import ExecRequest, ExecResult, Executor
from scalebox_stream.executors.lifecycle import is_setup_failure
from scalebox_stream.executors.lockdown import ContainerPolicy, own_work_dir, refused_volume, volume_roots
from scalebox_stream.executors.slot_support import empty_dir
from scalebox_stream.intask import (
    BIN_DIR,
    CHANNEL_ENV,
    CONTAINER_BIN_DIR,
    CONTAINER_CHANNEL_DIR,
    CONTAINER_FUNCTIONS,
    FUNCTIONS_FILE,
)
from scalebox_stream.kafka.presence import HostDirectory
from scalebox_stream.kafka.topics import EVENTS_TOPIC, task_topic
from scalebox_stream.policy.admission import ADMIT, Verdict, check_verdict
from scalebox_stream.policy.outcome import AttemptVerdict, decide_attempt, within_deadline
from scalebox_stream.policy.timeouts import attempt_timeout, queue_expired
from scalebox_stream.spec.model import AppSpec, ModuleSpec

log = logging.getLogger(__name__)

SINK_FILE = "sink-tasks.txt"
"""The file in which a program lists the messages it sends on, one per line."""
AGENT_ENV_PASSED = ("LOCAL_IP_INDEX",)
"""Variables of the agent's own environment a task sees too, when they are set."""
CHECK_TIMEOUT_S = 60.0
"""How long a module's check script may run before the task is refused (and checked again later)."""


class OutMessage(NamedTuple):
    """One record to produce."""

    topic: str
    key: str | bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@dataclass(frozen=True)
class AttemptReport:
    """The records that report one attempt, and its outcome label."""

    records: list[OutMessage]
    outcome: str


@dataclass(frozen=True)
class TaskMessage:
    """A task as consumed from its topic."""

    event: Event
    topic: str
    partition: int
    offset: int
    refusals: int = 0
    accepted_at: int | None = None
    """When a slot took it, while no TaskAccepted has said so: TaskStarted (or the report) carries it then."""
    assignment: int = 0
    """The number of the agent's assignment of its partition it came with (a report under an older one is
    stale: the partition was given up meanwhile)."""

    @property
    def source(self) -> tuple[str, int]:
        """The topic partition it came from."""
        return self.topic, self.partition


class TaskRunner:
    """Turns a TaskCreated event into an executed attempt and the records that report it."""

    def __init__(self, spec: AppSpec, identity: AgentIdentity, executor: Executor, codec: EventCodec,
                 work_root: Path, keep_work_dirs: bool = False, directory: HostDirectory | None = None,
                 tool_handler: ToolHandler | None = None, in_task_tools: bool = True) -> None:
        self.spec = spec
        self.module: ModuleSpec = spec.modules[identity.module]
        self.identity = identity
        self.executor = executor
        self.codec = codec
        self.work_root = work_root.resolve()  # once: executors take the work directories as they are
        self.keep_work_dirs = keep_work_dirs
        self.stamp = EventStamp.for_agent(identity)
        self.outputs = OutputRouter(spec, self.stamp, identity, directory)
        self.tools = ToolServer(tool_handler) if in_task_tools else None
        self._channels: dict[int, ToolChannel] = {}
        """Serves the in-task tools' requests (see agent/tools.py); its thread starts with the first attempt."""
        self.contract = ModuleContract.of(spec, self.module, executor.name, getattr(executor, "files_in_image", None))
        if self.contract.mounts and spec.cluster_data_dir is not None and self.module.cluster_data_mapping:
            with contextlib.suppress(OSError):  # podman refuses a missing bind source (docker would make it)
                spec.cluster_data_dir.mkdir(parents=True, exist_ok=True)
        self._checked: dict[int, tuple[str, int]] = {}
        """Per slot, the attempt whose check has just admitted it (its run keeps what the check left)."""
        self._left_out: set[str] = set()
        """Standard mounts the allow-list refused (each warned about once)."""
        self.redact = Redactor()
        """Secret values of this module seen so far, removed from every text an attempt reports."""
        m = self.module
        self.policy = ContainerPolicy(
            user=m.user, cap_add=tuple(m.cap_add), memory_bytes=m.resources.memory, cpus=m.resources.cpus,
            read_only_rootfs=m.read_only_rootfs, volume_roots=volume_roots((spec.app_dir, spec.cluster_data_dir)),
            **({"pids": m.resources.pids} if m.resources.pids else {}))

    def to_events(self, event: Event) -> OutMessage:
        """The record that puts an event on the events topic."""
        return OutMessage(EVENTS_TOPIC, event.task_id, self.codec.encode(event))

    def accepted(self, task: TaskMessage, slot: int) -> OutMessage:
        """The TaskAccepted of `task` in `slot`, dated `task.accepted_at` (sent alone only when the attempt
        does not start at once)."""
        event = self.stamp.event(TaskAccepted(agent=self.identity.agent_id, slot=slot, topic=task.topic,
                                              partition=task.partition, offset=task.offset),
                                 task.event.task_id, task.event.attempt)
        return self.to_events(replace(event, occurred_at=task.accepted_at or event.occurred_at))

    def run(self, task: TaskMessage, slot: int, publish: Callable[[OutMessage], None]) -> AttemptReport:
        """Run the attempt; `publish` sends lifecycle events early; returns the final records.

        A task whose acceptance no TaskAccepted has reported yet (`task.accepted_at`) gets it in its
        TaskStarted, or, if the program never starts, in a TaskAccepted ahead of the report."""
        created = task.event
        checked = self._checked.pop(slot, None) == (created.task_id, created.attempt)
        work_dir = self._fresh_work_dir(created.task_id, created.attempt, slot, keep=checked)
        started_at = now_us()
        unreported = task.accepted_at is not None
        expired = self._expiry(created, started_at / 1e6)
        if expired is not None:
            try:
                report = self._report(created, slot, work_dir, expired, started_at, may_retry=False)
                return self._with_acceptance(report, task, slot) if unreported else report
            finally:
                empty_dir(work_dir)
        channel = self._tool_channel(slot)
        try:
            request = self._request(created, slot, work_dir, channel)
        except SecretError as exc:  # the attempt cannot run: an error naming the secret, never its value
            result = ExecResult(exit_code=125, error=str(exc), started_at_us=started_at, finished_at_us=now_us())
            try:
                report = self._report(created, slot, work_dir, result, started_at)
                return self._with_acceptance(report, task, slot) if unreported else report
            finally:
                empty_dir(work_dir)

        def on_started(container_id: str | None) -> None:
            nonlocal started_at, unreported
            started_at = now_us()
            acceptance = {"accepted_at": task.accepted_at, "topic": task.topic, "partition": task.partition,
                          "offset": task.offset} if unreported else {}
            unreported = False
            payload = TaskStarted(agent=self.identity.agent_id, slot=slot, executor=self.executor.name,
                                  image=self.module.image, container_id=container_id, started_at=started_at,
                                  admission_refusals=task.refusals, **acceptance)
            publish(self.to_events(self.stamp.event(payload, created.task_id, created.attempt)))

        if channel is not None:
            channel.begin(Caller(self.spec.name, self.module.name, created.task_id, created.attempt,
                                 created.payload.headers))
        try:
            result = self.executor.run(request, on_started)
        except Exception as exc:  # an executor bug must not kill the agent; record it instead
            log.exception("executor failed on task %s", created.task_id)
            result = ExecResult(exit_code=125, error=f"executor failure: {exc}")
        finally:
            if channel is not None:
                channel.end()
        if self.redact:
            result = replace(result, stdout=self.redact.data(result.stdout), stderr=self.redact.data(result.stderr),
                             error=self.redact.text(result.error))
        names = listing(work_dir)  # what the program left: read below, then removed without listing again
        try:
            report = self._report(created, slot, work_dir, result, started_at, names=names)
            if REMOVED_FILES in names and report.outcome == "succeeded":
                for problem in remove_listed_files(work_dir, self._view(work_dir), REMOVED_FILES):
                    log.warning("task %s: %s: %s", created.task_id, REMOVED_FILES, problem)
            return self._with_acceptance(report, task, slot) if unreported else report
        finally:
            if not self.keep_work_dirs:
                empty_dir(work_dir, names)

    def _with_acceptance(self, report: AttemptReport, task: TaskMessage, slot: int) -> AttemptReport:
        """`report` preceded by the TaskAccepted no TaskStarted carried (the program never started)."""
        return AttemptReport([self.accepted(task, slot), *report.records], report.outcome)

    @staticmethod
    def task_created_s(created: Event) -> float:
        """When attempt 1 of the task was created, in seconds since the epoch."""
        return (created.payload.task_created_at or created.occurred_at) / 1e6

    def _expiry(self, created: Event, now_s: float) -> ExecResult | None:
        """A result for an attempt that must not start (queue timeout or task deadline passed), else None."""
        due_s = max(created.occurred_at, created.payload.not_before or 0) / 1e6
        if queue_expired(self.module, due_s, now_s):
            reason = f"queue timeout: waited {now_s - due_s:.1f}s > queue_timeout_seconds"
        elif (limit := attempt_timeout(self.module, self.task_created_s(created), now_s)) is not None and limit <= 0:
            reason = "task deadline passed before the attempt could start"
        else:
            return None
        now = int(now_s * 1e6)
        return ExecResult(exit_code=124, timed_out=True, error=reason, started_at_us=now, finished_at_us=now)

    def lost_report(self, created: Event, attempt: int, exit_code: int) -> OutMessage:
        """The report of an attempt whose agent went away before reporting it."""
        return self._synthetic_finish(created, attempt, "lost", exit_code,
                                      "attempt lost: its agent stopped without reporting it; detected by "
                                      f"{self.identity.agent_id} from the partition's lease record")

    def crash_report(self, task: TaskMessage, slot: int, cause: BaseException | str,
                     may_retry: bool = True) -> AttemptReport:
        """The report of an attempt that raised instead of ending (`cause`: the exception), or whose report can
        never be published (`cause`: why): a TaskFinished `error` (exit code 125) naming the cause, then the
        retry rules. If even that cannot be built, or `may_retry` is False, the TaskFinished and a TaskFailed
        alone, with no retry: built from the task's checked ids and a sanitized text, that report cannot fail."""
        created = task.event
        text = cause if isinstance(cause, str) else f"the attempt crashed: {type(cause).__name__}: {cause}"
        error = storable(text[:4096])
        if may_retry:
            try:
                now = now_us()
                result = ExecResult(exit_code=125, error=error, started_at_us=now, finished_at_us=now)
                verdict = self._verdict(created, result, error, may_retry=True)
                records = [self._synthetic_finish(created, created.attempt, verdict.outcome, 125, error),
                           *self._follow_up(created, verdict, 125, error)]
                if (too_big := oversized(records)) is None:
                    return AttemptReport(records, verdict.outcome)
                error = f"{error}; {too_big}"
            except Exception as exc:  # e.g. a retry delay no event can carry: end the task instead
                log.exception("could not build the report of task %s's crashed attempt", created.task_id)
                error = f"{error}; its report could not be built ({type(exc).__name__}), so it is not retried"
        return AttemptReport([self._synthetic_finish(created, created.attempt, "error", 125, error),
                              self.failed(created.task_id, created.attempt, f"error: exit code 125; {error}")], "error")

    def _never_ran(self, child: Event, problem: str) -> list[OutMessage]:
        """Records that fail a child task which could not be placed."""
        return [self._synthetic_finish(child, 1, "error", 125, problem),
                self.failed(child.task_id, 1, problem, child.module)]

    def _synthetic_finish(self, created: Event, attempt: int, outcome: str, exit_code: int,
                          error: str) -> OutMessage:
        """A TaskFinished for an attempt this agent did not run itself."""
        now = now_us()
        result = ExecResult(exit_code=exit_code, error=error, started_at_us=now, finished_at_us=now)
        return self.to_events(self._finished(created, attempt, -1, outcome, result, error, Perspective(), [], now,
                                             created.module))

    def _finished(self, created: Event, attempt: int, slot: int, outcome: str, result: ExecResult,
                  error: str | None, perspective: Perspective, children: list[Event], started_at: int,
                  module: str | None = None) -> Event:
        """The TaskFinished of attempt `attempt` of `created`'s task, of `module` (default: this agent's); the
        one place that builds one."""
        cap, mode = self.module.output_text_size, self.module.text_trunc_mode
        return self.stamp.event(TaskFinished(
            agent=self.identity.agent_id, slot=slot, executor=self.executor.name, image=self.module.image,
            container_id=result.container_id, outcome=outcome, exit_code=result.exit_code, signal=result.signal,
            timed_out=result.timed_out, error=error,
            stdout=cap_text(result.stdout, cap, mode), stderr=cap_text(result.stderr, cap, mode),
            custom_out=cap_text(self.redact.data(perspective.custom_out), cap, mode),
            message_text=self.redact.text(perspective.message_text),
            stdout_bytes=len(result.stdout) if result.stdout_total is None else result.stdout_total,
            stderr_bytes=len(result.stderr) if result.stderr_total is None else result.stderr_total,
            status_code=perspective.status_code, input_bytes=perspective.input_bytes,
            output_bytes=perspective.output_bytes, read_bytes=result.read_bytes, write_bytes=result.write_bytes,
            cpu_user_s=result.cpu_user_s, cpu_system_s=result.cpu_system_s,
            peak_memory_bytes=result.peak_memory_bytes,
            started_at=result.started_at_us or started_at, finished_at=result.finished_at_us or now_us(),
            user_timestamps=[UserTimestamp(at=at, label=label) for at, label in perspective.timestamps],
            emitted_task_ids=[c.task_id for c in children], emitted_modules=[c.module for c in children],
            extra_attributes=extra_attributes_json(perspective.extra_attributes, self.redact.text)),
            created.task_id, attempt, module)

    def failed(self, task_id: str, attempt: int, reason: str, module: str | None = None) -> OutMessage:
        """The terminal TaskFailed of a task of `module` (default: this agent's) after `attempt` attempts."""
        return self.to_events(self.stamp.event(TaskFailed(attempts=attempt, reason=reason), task_id, attempt, module))

    def _fresh_work_dir(self, task_id: str, attempt: int, slot: int, keep: bool = False) -> Path:
        """An empty work directory: the slot's own, reused (cheaper on a busy disk than a directory created and
        removed per task), or the attempt's own when work directories are kept. `keep`: as it is (what the
        attempt's check left in it)."""
        base = self._work_base
        if not self.keep_work_dirs:
            path = base / f"{self.identity.agent_id}.slot{slot}"
            if not keep:
                empty_dir(path)
            return path
        path = base / f"{task_id}.{attempt}"
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def _work_base(self) -> Path:
        """The directory of this module's work directories (in memory with tmpfs_workdir)."""
        return (self.contract.work_root or self.work_root) / self.spec.name / self.module.name

    def _view(self, work_dir: Path) -> ProgramView:
        """How the paths the program names map onto this host (its mounts included)."""
        return program_view(self.executor.name, work_dir, [*self.module.volumes, *self.contract.mounts])

    @property
    def has_runtime_check(self) -> bool:
        """Whether the module has a check script to run in its runtime before each attempt."""
        return self.contract.check is not None

    def check_in_runtime(self, created: Event, slot: int) -> Verdict:
        """Run the module's check script (`ACTION_CHECK`, else check.sh) in its runtime, as the attempt would
        run: exit 0 admits. What it leaves in the work directory stays there for the attempt's run."""
        assert self.contract.check is not None
        work_dir = self._fresh_work_dir(created.task_id, created.attempt, slot)
        channel = self._tool_channel(slot)
        request = self._request(created, slot, work_dir, channel)
        request = replace(request, argv=[*self.contract.check, *request.argv[-2:]], name=f"{request.name}-check",
                          timeout_s=CHECK_TIMEOUT_S)
        if channel is not None:
            channel.begin(Caller(self.spec.name, self.module.name, created.task_id, created.attempt,
                                 created.payload.headers))
        try:
            result = self.executor.run(request, lambda _container_id: None)
        finally:
            if channel is not None:
                channel.end()
        if is_setup_failure(result) or (result.error and not result.timed_out):
            # not the check's answer: the slot's setup failed, or the runtime could not run anything (no such
            # image...). The attempt runs (its setup runs again) and fails with that error, under the retry
            # rules, instead of the task being re-checked forever.
            log.warning("module %s: the check of task %s could not run (%s); the attempt will report it",
                        self.module.name, created.task_id, result.error)
            empty_dir(work_dir)
            return ADMIT
        output = (result.stdout + result.stderr).decode(errors="replace")
        verdict = check_verdict(result.exit_code, output if not result.error else f"{result.error}: {output}")
        if verdict.admitted:
            self._checked[slot] = (created.task_id, created.attempt)
        else:
            empty_dir(work_dir)
        return verdict

    def _tool_channel(self, slot: int) -> ToolChannel | None:
        """The slot's channel for the in-task tools (made on its first attempt), or None without tools."""
        if self.tools is None:
            return None
        if (channel := self._channels.get(slot)) is not None:
            return channel
        path = self.work_root / self.spec.name / self.module.name / f"{self.identity.agent_id}.slot{slot}.tools"
        try:
            channel = self._channels[slot] = self.tools.channel(str(slot), path)
            if self.executor.name != "process":  # the container's (non-root) user opens the FIFO read-write
                own_work_dir(path, self.policy)
                own_work_dir(path / REQUESTS_FIFO, self.policy, 0o666)
            return channel
        except (OSError, RuntimeError):
            log.exception("no in-task tool channel for slot %d", slot)
            return None

    def close(self) -> None:
        """Stop serving the in-task tools."""
        if self.tools is not None:
            self.tools.close()

    def remove_slot_work_dirs(self) -> None:
        """Remove this agent's (empty) slot work directories; call when the agent stops."""
        for path in self._work_base.glob(f"{self.identity.agent_id}.slot*"):
            shutil.rmtree(path, ignore_errors=True)

    def _request(self, created: Event, slot: int, work_dir: Path, channel: ToolChannel | None = None) -> ExecRequest:
        headers = created.payload.headers
        sinks = self.spec.sinks_of(self.module.name)
        app, module = self.spec.name, self.module.name
        env = {
            "APP": app, "APP_ID": app, "MODULE_NAME": module, "MODULE_ID": module, "JOB_ID": module,
            "JOB_NAME": module, "TASK_ID": created.task_id,
            "ATTEMPT": str(created.attempt), "SLOT": str(slot), "SLOT_ID": f"{self.identity.agent_id}.slot{slot}",
            "LOCAL_IP": self.identity.ip, "HOST_NAME": self.identity.host, "CLUSTER": self.identity.cluster,
            "SINK_MODULE": sinks[0] if sinks else "", "SINK_JOB": sinks[0] if sinks else "",
            "FROM_MODULE": headers.get("from_module", ""),
            "FROM_IP": headers.get("from_ip", ""), "FROM_HOST": headers.get("from_host", ""),
            "OUTPUT_TEXT_SIZE": str(self.module.output_text_size),
            "TEXT_TRUNC_MODE": self.module.text_trunc_mode,
            **self.contract.env,
        }
        if self.module.task_max_seconds:
            env["TASK_MAX_SECONDS"] = env["TASK_TIMEOUT_SECONDS"] = f"{self.module.task_max_seconds:g}"
        if (min_seconds := self.module.task_min_seconds) is not None:
            env["TASK_MIN_SECONDS"] = f"{min_seconds:g}"
        for name in AGENT_ENV_PASSED:
            if name in os.environ:
                env[name] = os.environ[name]
        volumes = list(self.module.volumes)
        for mount in self.contract.mounts:  # the standard mounts pass the operator's allow-list like any volume
            if (why := refused_volume(mount, self.policy.volume_roots)) is None:
                volumes.append(mount)
            elif mount not in self._left_out:
                self._left_out.add(mount)
                log.warning("module %s: standard mount left out: %s", self.module.name, why)
        agent_volumes: list[str] = []
        path_prefix = None
        in_container = self.executor.name != "process"
        if in_container and (channel is not None or self.contract.run or self.contract.setup or self.contract.check):
            path_prefix = CONTAINER_BIN_DIR  # the tools, and sbx-action that runs the contract's scripts
            env["SBX_FUNCTIONS"] = CONTAINER_FUNCTIONS
            agent_volumes += [f"{BIN_DIR}:{CONTAINER_BIN_DIR}:ro", f"{FUNCTIONS_FILE}:{CONTAINER_FUNCTIONS}:ro"]
        elif not in_container and channel is not None:
            path_prefix, env["SBX_FUNCTIONS"] = str(BIN_DIR), str(FUNCTIONS_FILE)
        if channel is not None:
            env[CHANNEL_ENV] = CONTAINER_CHANNEL_DIR if in_container else str(channel.path)
            if in_container:
                agent_volumes.append(f"{channel.path}:{CONTAINER_CHANNEL_DIR}:rw")
        env.update(self.module.environments)
        if self.module.secrets:
            secrets = read_secrets(self.module.secrets)
            self.redact.add(secrets.values())
            env.update(secrets)
        program = self.contract.run or self.module.command
        argv = [*program, created.payload.body, json.dumps(headers, separators=(",", ":"))]
        name = f"sbx-{self.spec.name}-{self.module.name}-{created.task_id}-{created.attempt}"
        labels = {"scalebox.app": self.spec.name, "scalebox.module": self.module.name,
                  "scalebox.task_id": created.task_id, "scalebox.agent": self.identity.agent_id}
        timeout = attempt_timeout(self.module, self.task_created_s(created), now_us() / 1e6)
        return ExecRequest(argv=argv, env=env, work_dir=work_dir, name=name, image=self.module.image,
                           volumes=volumes, agent_volumes=agent_volumes, timeout_s=timeout, labels=labels,
                           keep_output_bytes=self.module.output_text_size, slot=slot, path_prefix=path_prefix,
                           network=self.contract.network, setup=self.contract.setup, teardown=self.contract.teardown,
                           policy=self.policy)

    def _report(self, created: Event, slot: int, work_dir: Path, result: ExecResult,
                started_at: int, may_retry: bool = True, names: set[str] | None = None,
                bare: bool = False) -> AttemptReport:
        if names is None:
            names = listing(work_dir)  # the files a program did not write are not even opened
        perspective = read_perspective(work_dir, self._view(work_dir),
                                       names, self.module.output_text_size, self.module.text_trunc_mode)
        error = result.error or perspective.error
        children = Children()
        if result.exit_code == 0 and not result.timed_out and not error:
            try:
                messages = read_outputs(work_dir, names, self.spec.modules) if not names.isdisjoint(OUTPUT_FILES) \
                    else []
                children = self.outputs.children(created, messages)
            except (SinkLineError, NoSinkError) as exc:
                error = str(exc)
        verdict = self._verdict(created, result, error, may_retry)
        problems = "; ".join(perspective.problems) or None
        finished = self._finished(created, created.attempt, slot, verdict.outcome, result, error or problems,
                                  perspective, children.all, started_at)
        records = [self.to_events(finished)]
        for child in children.placed:
            value = self.codec.encode(child)
            records.append(OutMessage(child.payload.topic, child.task_id, value))
            records.append(OutMessage(EVENTS_TOPIC, child.task_id, value))
        for child, problem in children.unplaceable:
            records.append(OutMessage(EVENTS_TOPIC, child.task_id, self.codec.encode(child)))
            records.extend(self._never_ran(child, problem))
        records.extend(self._follow_up(created, verdict, result.exit_code, error))
        if (too_big := oversized(records)) is not None and (may_retry or not bare):
            # reported again without texts, perspective or children; if even that is too large (the task's
            # own body is), without its retry
            return self._report(created, slot, work_dir, bare_result(result, too_big), started_at,
                                may_retry=may_retry and not bare, names=set(), bare=True)
        return AttemptReport(records, verdict.outcome)

    def _verdict(self, created: Event, result: ExecResult, error: str | None, may_retry: bool) -> AttemptVerdict:
        duration_s = max(0, (result.finished_at_us or 0) - (result.started_at_us or 0)) / 1e6
        verdict = decide_attempt(self.module.retry_policy, created.attempt, result.exit_code, duration_s,
                                 result.timed_out, error, random.random())
        if not may_retry:
            return AttemptVerdict(verdict.outcome, retry=False, reason=error or verdict.reason)
        return within_deadline(verdict, self.module, self.task_created_s(created), now_us() / 1e6)

    def _follow_up(self, created: Event, verdict: AttemptVerdict, exit_code: int,
                   error: str | None) -> list[OutMessage]:
        """A retry (the same task as attempt n+1), or a failure's terminal TaskFailed (a success needs none)."""
        task_id, attempt = created.task_id, created.attempt
        if verdict.retry:
            retry = self.stamp.event(TaskRetryScheduled(rule=verdict.rule, delay_s=verdict.delay_s,
                                                        next_attempt=attempt + 1), task_id, attempt)
            p = created.payload
            again = self.stamp.task_created(
                task_id, self.module.name, p.body, p.headers, p.topic, attempt=attempt + 1,
                parent_task_id=p.parent_task_id, task_created_at=p.task_created_at or created.occurred_at,
                not_before=now_us() + int(verdict.delay_s * 1e6) if verdict.delay_s > 0 else None)
            topic = p.topic or task_topic(self.spec.name, self.module.name)
            return [self.to_events(retry), OutMessage(topic, task_id, self.codec.encode(again))]
        if verdict.outcome == "succeeded":
            return []  # its TaskFinished ends the task too: a success is never retried (one event less per task)
        reason = f"{verdict.outcome}: exit code {exit_code}" + (f"; {error}" if error else "")
        return [self.failed(task_id, attempt, reason)]
