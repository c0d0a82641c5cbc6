"""When the agent's poll thread publishes and how long it may wait for a message (pure).

A finished task is published at once; lifecycle events and moved positions wait a little so that they
share a transaction (a short task's TaskAccepted, TaskStarted and finish then cost one, not two). While
short tasks run, the poll thread comes back every millisecond, so what a slot finishes is published at
once; after a quiet spell it relaxes.
"""

from __future__ import annotations

PUBLISH_INTERVAL_S = 0.02
"""Lifecycle events and moved positions alone wait this long, from when they were queued, for company."""
BUSY_S = 1.0
"""An agent that started a task within this long counts as busy with short tasks."""
BUSY_WAIT_S = 0.001
RUNNING_WAIT_S = 0.02
IDLE_WAIT_S = 0.1


def publish_due(finished: bool, pending: bool, pending_since: float | None, now: float) -> bool:
    """Publish now? `finished`: a task's report waits; `pending`: lifecycle events or moved positions wait,
    since `pending_since` (None when they were not seen before)."""
    if finished:
        return True
    if not pending:
        return False
    return pending_since is not None and now - pending_since >= PUBLISH_INTERVAL_S


def poll_wait(running: bool, last_start: float, now: float) -> float:
    """Seconds the poll may wait for a message (a message ends the wait early): `running` when tasks run
    or wait for their time, `last_start` when a task last started."""
    if not running:
        return IDLE_WAIT_S
    return BUSY_WAIT_S if now - last_start < BUSY_S else RUNNING_WAIT_S
