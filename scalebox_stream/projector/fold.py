"""Folds a batch of events into one delta per projected row (pure Python, no database).

Every column of a delta is combined with an associative rule (first non-null, last non-null, least,
greatest, highest rank), so folding a batch and then merging the delta into the stored row gives the
same row as applying the events one by one: the batch size does not change the projection. Events whose
effect is superseded within the batch (a `running` status followed by `succeeded`) cost no SQL at all.

The same rules are written in SQL in `apply.py` (merging a delta into a stored row).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter

from scalebox_stream.events import Event

TERMINAL_RANK = 10**12
FINISHED_SUCCESS_RANK = TERMINAL_RANK - 1
"""A succeeded attempt is final (a success is never retried), so its TaskFinished also ends the task. It ranks
just below TaskSucceeded, which agents no longer send: a log written while they did projects as it did then."""
STAGE = {"created": 0, "accepted": 1, "running": 2, "ended": 3, "retrying": 4}
RUN_RANK = {"created": 0, "accepted": 1, "running": 2, "ended": 3}

# TaskFinished payload fields kept on the attempt's row as one group (the last TaskFinished wins).
FINISHED_FIELDS = (
    "exit_code", "signal", "timed_out", "error", "stdout", "stderr", "custom_out", "message_text",
    "stdout_bytes", "stderr_bytes", "status_code", "input_bytes", "output_bytes", "read_bytes", "write_bytes",
    "cpu_user_s", "cpu_system_s", "peak_memory_bytes", "extra_attributes",
)
_finished_fields = itemgetter(*FINISHED_FIELDS)
RARE_TYPES = frozenset({"AgentLifecycle", "AppDeployed", "AppFinished", "ModuleState", "StateChanged"})


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@lru_cache(maxsize=1 << 13)  # a task's id comes by with each of its events, mostly close together; ~1.4 MB full
def uuid_key(value: str | None) -> str | None:
    """A task id in canonical form, so two spellings of one UUID fold into one row (non-UUIDs are kept:
    the database refuses them and the event is dead-lettered)."""
    if value is None or _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def task_rank(attempt: int, stage: str) -> int:
    """Monotonic rank of a task's status: later attempts outrank earlier ones; terminal beats all."""
    return max(attempt, 1) * 10 + STAGE[stage]


@dataclass(slots=True)
class TaskDelta:
    """The combined effect of a batch's events on one `tasks` row."""

    task_id: str
    app: str
    module: str
    creates: bool = False          # any event of the task: the row may be inserted (a TaskCreated may come last)
    body: str | None = None        # body and headers travel together (first TaskCreated wins)
    headers: str | None = None
    parent: str | None = None      # first non-null
    created_at: int | None = None  # least
    status: str | None = None      # highest rank wins, ties keep the earlier
    rank: int | None = None
    finished_at: int | None = None  # travels with the status
    attempts: int = 0              # greatest
    result_attempt: int | None = None  # exit code, host, custom text of the highest attempt that finished
    exit_code: int | None = None
    host: str | None = None
    custom_out: str | None = None

    def set_status(self, status: str, rank: int, finished_at: int | None = None) -> None:
        """Move to `status` if it outranks the current one."""
        if self.rank is None or rank > self.rank:
            self.status, self.rank, self.finished_at = status, rank, finished_at

    def set_result(self, attempt: int, exit_code: int, host: str, custom_out: str) -> None:
        """Take an attempt's result unless a later attempt is already known (then raise `attempts`)."""
        if attempt >= self.attempts:
            self.result_attempt, self.exit_code, self.host, self.custom_out = attempt, exit_code, host, custom_out
        self.attempts = max(self.attempts, attempt)


@dataclass(slots=True)
class RunDelta:
    """The combined effect of a batch's events on one `task_runs` row (one attempt)."""

    task_id: str
    attempt: int
    app: str
    module: str
    creates: bool = False
    cluster: str | None = None     # identity: last non-null
    host: str | None = None
    slot: int | None = None
    agent: str | None = None
    executor: str | None = None
    image: str | None = None
    container_id: str | None = None
    status: str | None = None      # highest rank wins, ties take the later (a second TaskFinished)
    rank: int | None = None
    created_at: int | None = None  # least
    accepted_at: int | None = None  # last non-null
    started_at: int | None = None  # first non-null
    finished: tuple | None = None  # FINISHED_FIELDS + user_timestamps, finished_at, recorded_at: last wins
    retry_rule: str | None = None  # last non-null
    admission_refusals: int | None = None  # last non-null

    def set_status(self, status: str, rank: int) -> None:
        """Move to `status` unless a higher rank is already known."""
        if self.rank is None or rank >= self.rank:
            self.status, self.rank = status, rank

    def set_identity(self, e: Event, slot: int, agent: str) -> None:
        """Where the attempt ran (last event wins)."""
        self.cluster, self.host, self.slot, self.agent = e.cluster, e.host, slot, agent

    def set_engine(self, executor: str, image: str | None, container_id: str | None) -> None:
        """How the attempt ran (last non-null wins)."""
        self.executor = executor
        if image is not None:
            self.image = image
        if container_id is not None:
            self.container_id = container_id


@dataclass
class Fold:
    """The deltas of one batch, keyed by primary key, plus the rare events applied one by one."""

    tasks: dict[str, TaskDelta] = field(default_factory=dict)
    runs: dict[tuple[str, int], RunDelta] = field(default_factory=dict)
    edges: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    rare: list[Event] = field(default_factory=list)

    def task(self, task_id: str, app: str, module: str) -> TaskDelta:
        """The delta of one task (created on first use)."""
        task_id = uuid_key(task_id)
        delta = self.tasks.get(task_id)
        if delta is None:
            delta = self.tasks[task_id] = TaskDelta(task_id, app, module)
        return delta

    def run(self, e: Event) -> RunDelta:
        """The delta of the event's attempt (created on first use)."""
        key = (uuid_key(e.task_id), e.attempt)
        delta = self.runs.get(key)
        if delta is None:
            delta = self.runs[key] = RunDelta(key[0], e.attempt, e.app, e.module)
        return delta

    def add(self, e: Event) -> None:
        """Fold one event in (events must be added in log order)."""
        handler = _HANDLERS.get(e.event_type)
        if handler is not None:
            handler(self, e)
        elif e.event_type in RARE_TYPES:
            self.rare.append(e)


def _created(f: Fold, e: Event) -> None:
    p = e.payload.to_avro()  # the Avro dict itself: the fold reads many fields per event
    t = f.task(e.task_id, e.app, e.module)
    t.creates = True
    if t.body is None:
        t.body, t.headers = p["body"], json.dumps(p["headers"])
    if t.parent is None:
        t.parent = uuid_key(p["parent_task_id"])
    t.created_at = e.occurred_at if t.created_at is None else min(t.created_at, e.occurred_at)
    t.set_status("created" if e.attempt <= 1 else "retrying", task_rank(e.attempt, "created"))
    r = f.run(e)
    r.creates = True
    r.created_at = e.occurred_at if r.created_at is None else min(r.created_at, e.occurred_at)
    r.set_status("created", RUN_RANK["created"])


def _accepted(f: Fold, e: Event) -> None:
    p = e.payload.to_avro()  # the Avro dict itself: the fold reads many fields per event
    r = f.run(e)
    r.creates = True
    r.set_identity(e, p["slot"], p["agent"])
    r.accepted_at = e.occurred_at
    r.set_status("accepted", RUN_RANK["accepted"])
    _task_progress(f, e, "accepted")


def _started(f: Fold, e: Event) -> None:
    p = e.payload.to_avro()  # the Avro dict itself: the fold reads many fields per event
    r = f.run(e)
    r.creates = True
    r.set_identity(e, p["slot"], p["agent"])
    r.set_engine(p["executor"], p["image"], p["container_id"])
    if r.started_at is None:
        r.started_at = p["started_at"]
    if p.get("accepted_at") is not None:  # no TaskAccepted went out before: the start carries the acceptance
        r.accepted_at = p["accepted_at"]
    r.admission_refusals = p.get("admission_refusals", 0)
    r.set_status("running", RUN_RANK["running"])
    _task_progress(f, e, "running")


def _finished(f: Fold, e: Event) -> None:
    p = e.payload.to_avro()  # the Avro dict itself: the fold reads many fields per event
    children, modules = p["emitted_task_ids"], p["emitted_modules"]
    if len(children) != len(modules):
        raise ValueError(f"TaskFinished {e.event_id}: {len(children)} emitted task ids but {len(modules)} modules")
    r = f.run(e)
    r.creates = True
    if p["outcome"] != "lost":  # a lost attempt is reported by another agent: keep where it ran
        r.set_identity(e, p["slot"], p["agent"])
        r.set_engine(p["executor"], p["image"], p["container_id"])
    if r.started_at is None:
        r.started_at = p["started_at"]
    r.set_status(p["outcome"], RUN_RANK["ended"])
    stamps = json.dumps([{"at": s["at"], "label": s["label"]} for s in p["user_timestamps"]])
    r.finished = (*_finished_fields(p), stamps, p["finished_at"], e.occurred_at)
    t = f.task(e.task_id, e.app, e.module)
    t.creates = True
    t.set_result(e.attempt, p["exit_code"], e.host, p["custom_out"])
    if p["outcome"] == "succeeded":
        t.set_status("succeeded", FINISHED_SUCCESS_RANK, e.occurred_at)
    parent = t.task_id
    for position, (child, module) in enumerate(zip(children, modules, strict=True)):
        placeholder = f.task(child, e.app, module)
        f.edges.setdefault((parent, placeholder.task_id), (module, position))
        placeholder.creates = True
        if placeholder.parent is None:
            placeholder.parent = parent
        placeholder.set_status("created", task_rank(1, "created"))


def _retry(f: Fold, e: Event) -> None:
    f.run(e).retry_rule = e.payload["rule"]
    _task_progress(f, e, "retrying")


def _terminal(f: Fold, e: Event) -> None:
    t = f.task(e.task_id, e.app, e.module)
    t.creates = True
    status = "succeeded" if e.event_type == "TaskSucceeded" else "failed"
    t.set_status(status, TERMINAL_RANK, e.occurred_at)
    t.attempts = max(t.attempts, e.payload["attempts"])


def _task_progress(f: Fold, e: Event, stage: str) -> None:
    t = f.task(e.task_id, e.app, e.module)
    t.creates = True
    t.set_status(stage, task_rank(e.attempt, stage))
    t.attempts = max(t.attempts, e.attempt)


_HANDLERS = {
    "TaskCreated": _created, "TaskAccepted": _accepted, "TaskStarted": _started, "TaskFinished": _finished,
    "TaskRetryScheduled": _retry, "TaskSucceeded": _terminal, "TaskFailed": _terminal,
}


def fold(events: list[Event]) -> Fold:
    """Fold events (in log order) into per-row deltas."""
    f = Fold()
    for e in events:
        f.add(e)
    return f
