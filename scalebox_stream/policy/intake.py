"""Whether a task record read from a task topic may be run (pure).

Anyone who can write to a task topic can put anything there: a record is checked before the agent touches it,
and a record that fails the check goes to the dead-letter topic, counted, with the fault named. Nothing in it
reaches a user program, a file name, a child task id or the projection unchecked.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024
"""A task body's size in UTF-8 bytes (it is an argv entry and a text column)."""
MAX_HEADERS = 256
"""Headers of one task."""
MAX_HEADER_BYTES = 16 * 1024
"""A header name and value together, in UTF-8 bytes."""
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


def _text_problem(name: str, value: str, limit: int) -> str | None:
    if "\x00" in value:
        return f"{name} contains a NUL byte"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name} is not valid UTF-8"
    if size > limit:
        return f"{name} has {size} bytes; the limit is {limit}"
    return None


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
    if problem := _text_problem("body", record.body, MAX_BODY_BYTES):
        return problem
    if len(record.headers) > MAX_HEADERS:
        return f"{len(record.headers)} headers; the limit is {MAX_HEADERS}"
    for key, value in record.headers.items():
        if not key:
            return "a header has an empty name"
        if problem := _text_problem(f"header {key[:40]!r}", key + value, MAX_HEADER_BYTES):
            return problem
    return None
