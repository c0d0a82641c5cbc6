"""Which finished apps' broker leftovers (task topics, consumer groups) are due for deletion.

A finished app's task topics are never read again: its tasks' whole history is in the event log and the
projection. Kept, every app would add partitions the broker loads at each start and lists in each metadata
answer, so the cost of every later start would grow with the number of apps ever run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

Lifetime = tuple[datetime | None, datetime | None]
"""An app's last deployment and the time it finished (None: not yet)."""


def due_apps(lifetimes: Mapping[str, Lifetime], now: datetime, retention_s: float) -> list[str]:
    """The apps that finished at least `retention_s` seconds before `now` (0: every finished app), sorted.
    An app not finished, or deployed again after it finished (it runs anew under its old name), is not due."""
    cutoff = now - timedelta(seconds=retention_s)
    return sorted(app for app, (deployed, finished) in lifetimes.items()
                  if finished is not None and finished <= cutoff and (deployed is None or deployed <= finished))
