"""The clocks of a task: per attempt, overall deadline, and queue wait. Times are seconds (epoch).

| module key | clock | measured |
| --- | --- | --- |
| `task_max_seconds` | per attempt (start to close) | from the attempt's start |
| `task_deadline_seconds` | overall, retries included (schedule to close) | from the task's creation |
| `queue_timeout_seconds` | queue wait (schedule to start) | from the attempt's creation to its start |

The per-attempt limit is shortened so that the deadline is kept; a retry that would start at or after
the deadline is not scheduled.
"""

from __future__ import annotations

from typing import Protocol


class TimeoutSpec(Protocol):
    """The module keys these functions read (a `ModuleSpec` has them)."""

    @property
    def task_max_seconds(self) -> float | None: ...

    @property
    def task_deadline_seconds(self) -> float | None: ...

    @property
    def queue_timeout_seconds(self) -> float | None: ...


def deadline_at(spec_module: TimeoutSpec, created_at_s: float) -> float | None:
    """When the task's overall deadline falls (None: no deadline)."""
    if spec_module.task_deadline_seconds is None:
        return None
    return created_at_s + spec_module.task_deadline_seconds


def attempt_timeout(spec_module: TimeoutSpec, created_at_s: float, now_s: float) -> float | None:
    """The limit for an attempt starting at `now_s` of a task created at `created_at_s`.

    `task_max_seconds`, shortened to the time left before the deadline; None if there is neither.
    0 or less means the deadline has already passed (do not start the attempt).
    """
    deadline = deadline_at(spec_module, created_at_s)
    per_attempt = spec_module.task_max_seconds
    if deadline is None:
        return per_attempt
    left = deadline - now_s
    return left if per_attempt is None else min(per_attempt, left)


def queue_expired(spec_module: TimeoutSpec, created_at_s: float, now_s: float) -> bool:
    """True if an attempt created (or, for a delayed retry, due) at `created_at_s` waited too long."""
    limit = spec_module.queue_timeout_seconds
    return limit is not None and now_s - created_at_s > limit


def retry_allowed_by_deadline(spec_module: TimeoutSpec, created_at_s: float, now_s: float,
                              delay_s: float) -> bool:
    """False if a retry scheduled `delay_s` after `now_s` would start at or after the task's deadline."""
    deadline = deadline_at(spec_module, created_at_s)
    return deadline is None or now_s + delay_s < deadline
