"""Whether a task record read from a task topic may be run (pure).

Anyone who can write to a task topic can put anything there: a record is checked before the agent touches it,
and a record that fails the check goes to the dead-letter topic, counted, with the fault named. Nothing in it
reaches a user program, a file name, a child task id or the projection unchecked.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from scalebox_stream.policy.limits import check_body, check_headers

MAX_ATTEMPT = 10_000
"""The highest attempt number a task may carry."""
MAX_DELAY_US = 366 * 24 * 3600 * 1_000_000
"""How far ahead of now a task's `not_before` may lie (a year)."""


@dataclass(frozen=True)
class TaskRecord:
    """The fields of a TaskCreated that the agent acts on."""

    app: str
    module: str
    task_id: str
    attempt: int
    body: str
    headers: Mapping[str, str]
    not_before: int | None = None
    parent_task_id: str | None = None


def _uuid_problem(name: str, value: str) -> str | None:
    try:
        if str(uuid.UUID(value)) == value.lower():
            return None
    except (ValueError, AttributeError, TypeError):
        pass
    return f"{name} {value[:80]!r} is not a UUID"


def task_record_problem(record: TaskRecord, app: str, module: str, now_us: int) -> str | None:
    """Why `record`, read from a task topic of (`app`, `module`), must not run; None if it may."""
    if record.app != app:
        return f"app {record.app[:80]!r} is not this agent's app {app!r}"
    if record.module != module:
        return f"module {record.module[:80]!r} is not this agent's module {module!r}"
    if problem := _uuid_problem("task_id", record.task_id):
        return problem
    if record.parent_task_id is not None and (problem := _uuid_problem("parent_task_id", record.parent_task_id)):
        return problem
    if not 1 <= record.attempt <= MAX_ATTEMPT:
        return f"attempt {record.attempt} is outside 1..{MAX_ATTEMPT}"
    if record.not_before is not None and not 0 <= record.not_before <= now_us + MAX_DELAY_US:
        return f"not_before {record.not_before} is not a time within a year from now (µs since the epoch)"
    return check_body(record.body) or check_headers(record.headers)
