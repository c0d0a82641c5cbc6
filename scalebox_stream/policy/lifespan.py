"""When an agent stops by itself: its app is finished, or it has had no task for its module's idle limit.

Scalebox's slots exit after `max_idle_polls` empty polls of `poll_interval_seconds` each. Agents here are fed
by Kafka and do not poll, so the limit is the same span of time without a task: `max_idle_polls` (the module's,
else the app's `default_idle_polls`) times `poll_interval_seconds`. Without either count, or with
`always_running`, an agent never stops for being idle (nothing here restarts a stopped agent when tasks come).
"""

from __future__ import annotations


def idle_limit_s(max_idle_polls: int | None, default_idle_polls: int | None, poll_interval_s: float,
                 always_running: bool = False) -> float | None:
    """Seconds without a task after which the agent stops; None: never."""
    polls = max_idle_polls if max_idle_polls is not None else default_idle_polls
    if always_running or polls is None:
        return None
    return polls * poll_interval_s


def idle_expired(idle_since_s: float | None, now_s: float, limit_s: float | None) -> bool:
    """True once the agent has had nothing to do (no task running, buffered or waiting) since `idle_since_s`
    for at least `limit_s` (None: never; `idle_since_s` None: it is busy)."""
    return limit_s is not None and idle_since_s is not None and now_s - idle_since_s >= limit_s
