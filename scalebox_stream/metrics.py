"""Prometheus metrics of scalebox-stream processes (bounded labels only: never task ids).

The collectors live in prometheus-client's default registry; `serve(port)` exposes them on
`http://0.0.0.0:port/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENT_TYPES = frozenset({
    "TaskCreated", "TaskAccepted", "TaskStarted", "TaskFinished", "TaskRetryScheduled", "TaskSucceeded",
    "TaskFailed", "AppDeployed", "AppFinished", "AgentLifecycle",
})

PROJECTED_EVENTS = Counter("scalebox_projector_events", "Events applied to the projection.", ["event_type"])
DUPLICATE_EVENTS = Counter("scalebox_projector_duplicate_events",
                           "Events skipped because their event_id was already applied.")
BATCHES = Counter("scalebox_projector_batches", "Batches committed to PostgreSQL.")
BATCH_SECONDS = Histogram("scalebox_projector_batch_seconds", "Time to decode, apply and commit one batch.",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DEAD_LETTERS = Counter("scalebox_projector_dead_letters", "Events sent to the dead-letter topic.", ["reason"])
BATCH_CONFLICTS = Counter("scalebox_projector_batch_conflicts",
                          "Batches applied again because another projector of the group touched the same rows.")
DB_RECONNECTS = Counter("scalebox_projector_db_reconnects", "Reconnections to PostgreSQL after a failure.")
LAG = Gauge("scalebox_projector_lag_events", "Events in the assigned partitions not projected yet.")

_served: set[int] = set()


def event_type_label(event_type: str) -> str:
    """A bounded label value for an event type (unknown types count as `other`)."""
    return event_type if event_type in EVENT_TYPES else "other"


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose the default registry over HTTP on `port` (once per port and process)."""
    if port in _served:
        return
    start_http_server(port, addr=addr)
    _served.add(port)
