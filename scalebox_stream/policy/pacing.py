"""When the agent's poll thread publishes and how long it may wait for a message (pure).

A finished task is published at once, unless other tasks are still running and the last transaction ended less
than TXN_GAP_S ago: under load, transactions then come at most that often and carry every report finished
meanwhile. Lifecycle events (records) wait a little, from when they were queued,
so that they share a transaction: a short task's TaskAccepted, TaskStarted and finish then cost one, not two.
Positions that moved on their own (the consumer stepped over the transaction marker after a task) are not
urgent: a crash would only make the next owner skip the marker again. They ride along with the next
transaction, or go alone after a second; they never make queued records due early. (Published at once, they
cost a transaction per task, which the next task's transaction often had to wait for.) While short tasks run, the
poll thread comes back every millisecond, so what a slot finishes is published at once; after a quiet spell
it relaxes, but never past the moment something pending falls due. While the gap holds what is pending, it
sleeps until the gap ends: nothing could be published sooner.
"""

from __future__ import annotations

PUBLISH_INTERVAL_S = 0.02
"""Lifecycle events wait this long for company."""
TXN_GAP_S = 0.035
"""While other tasks still run, a transaction starts at least this long after the previous one ended. Under load
the reports that finish meanwhile then share it: a transaction costs the broker about a dozen requests (and the
next module's agent and the projector a fetch each) whatever it carries. A lone task never waits for it."""
OFFSETS_INTERVAL_S = 1.0
"""Positions that moved on their own wait this long for company."""
BUSY_S = 1.0
"""An agent that started a task within this long counts as busy with short tasks."""
BUSY_WAIT_S = 0.001
RUNNING_WAIT_S = 0.02
FULL_BUFFER_POLL_S = 0.05
"""How often the loop polls the consumer while the task buffer is full."""
IDLE_WAIT_S = 0.1


def pending_since(pending: bool, since: float | None, now: float) -> float | None:
    """When something pending was first seen: kept while it stays pending, `now` when it is new, None when
    nothing is pending."""
    if not pending:
        return None
    return now if since is None else since


def due_at(records_since: float | None, offsets_since: float | None) -> float | None:
    """When what is pending must be published (None: nothing is pending). `records_since`: when lifecycle
    records were first seen queued; `offsets_since`: when positions first moved, unpublished."""
    if records_since is not None:
        return records_since + PUBLISH_INTERVAL_S
    if offsets_since is not None:
        return offsets_since + OFFSETS_INTERVAL_S
    return None


def others_running(finished: int, running: int) -> bool:
    """Whether the gap may hold what is pending, with `finished` reports waiting and `running` tasks still
    running: a report waits while a task runs, or two or more run. A lone running task is not held, so its report
    goes the moment it finishes (and the poll loop keeps turning for it)."""
    return running >= (1 if finished else 2)


def held_until(pending: bool, others_running: bool, last_publish: float | None) -> float | None:
    """Until when the transaction gap holds what is `pending` (None: it does not): while `others_running` (tasks
    other than those whose reports wait are still running), TXN_GAP_S after the last transaction ended."""
    if not (pending and others_running) or last_publish is None:
        return None
    return last_publish + TXN_GAP_S


def publish_due(finished: bool, records_since: float | None, offsets_since: float | None, now: float,
                others_running: bool = False, last_publish: float | None = None) -> bool:
    """Publish now? `finished`: a task's report waits (at once, unless the gap holds it: see `held_until`)."""
    hold = held_until(True, others_running, last_publish)
    if hold is not None and now < hold:
        return False
    if finished:
        return True
    due = due_at(records_since, offsets_since)
    return due is not None and now >= due


def poll_wait(running: bool, last_start: float, now: float, due: float | None = None,
              held: float | None = None) -> float:
    """Seconds the poll may wait for a message (a message ends the wait early): `running` when tasks run
    or wait for their time, `last_start` when a task last started, `due` when pending records fall due, `held`
    until when the transaction gap holds them (nothing can be published before: turning every millisecond
    meanwhile only cost the agent CPU)."""
    if held is not None and held > now:
        return held - now
    busy = now - last_start < BUSY_S
    wait = (BUSY_WAIT_S if busy else RUNNING_WAIT_S) if running else IDLE_WAIT_S
    return wait if due is None else max(0.0, min(wait, due - now))


def may_fetch(room: int, since_fetch_s: float) -> bool:
    """Ask the consumer for messages now? Always while the task buffer has `room`; when it is full, only every
    FULL_BUFFER_POLL_S (which serves the consumer's callbacks and may add one message). Polling a full buffer
    on every turn of a fast loop added a task per turn, until fetching paused at the buffer's cap; a resumed
    partition is fetched again only after up to a second, and the slots ran dry meanwhile."""
    return room > 0 or since_fetch_s >= FULL_BUFFER_POLL_S
