"""Prometheus metrics of scalebox-stream processes (bounded labels only: never task ids): the projector's, then
the agents' (labelled app, module, cluster, host and, for counts of ends, outcome).

The collectors live in prometheus-client's default registry; `serve(port)` exposes them on
`http://127.0.0.1:port/metrics`: loopback unless `SCALEBOX_METRICS_ADDR` names another address (`0.0.0.0` for a
Prometheus on another machine or in another container).
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENT_TYPES = frozenset({
    "TaskCreated", "TaskAccepted", "TaskStarted", "TaskFinished", "TaskRetryScheduled", "TaskSucceeded",
    "TaskFailed", "AppDeployed", "AppFinished", "AgentLifecycle", "ModuleState", "StateChanged",
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

AGENT_LABELS = ("app", "module", "cluster", "host")
"""Every agent collector's labels: which agent's module, where (never a task id)."""
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600,
                   12 * 3600, 24 * 3600)
"""From a `/bin/true` (a few ms) to the day-long tasks of radio-astronomy pipelines."""
ATTEMPTS_STARTED = Counter("scalebox_agent_attempts_started", "Attempts a slot started (after admission).",
                           AGENT_LABELS)
ATTEMPTS_FINISHED = Counter("scalebox_agent_attempts_finished", "Attempts that ended, by outcome label.",
                            (*AGENT_LABELS, "outcome"))
ATTEMPT_SECONDS = Histogram("scalebox_agent_attempt_seconds", "Wall time of one attempt in its slot.",
                            AGENT_LABELS, buckets=ATTEMPT_BUCKETS)
ADMISSION_REFUSALS = Counter("scalebox_agent_admission_refusals",
                             "Admission checks that refused a task (it waits and is checked again).", AGENT_LABELS)
LOST_ATTEMPTS = Counter("scalebox_agent_lost_attempts",
                        "Attempts found lost with a dead agent and recorded by this one.", AGENT_LABELS)
AGENT_DEAD_LETTERS = Counter("scalebox_agent_dead_letters", "Undecodable task messages sent to the dead-letter topic.",
                             AGENT_LABELS)
TRANSACTIONS = Counter("scalebox_agent_transactions", "Kafka transactions (reports, next tasks and positions), "
                       "by outcome: committed or failed.", (*AGENT_LABELS, "outcome"))
TRANSACTION_SECONDS = Histogram("scalebox_agent_transaction_seconds", "Time to publish and commit one transaction.",
                                AGENT_LABELS, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                       2.5, 5, 10))
SLOTS = Gauge("scalebox_agent_slots", "Slots the agent runs tasks in.", AGENT_LABELS)
SLOTS_BUSY = Gauge("scalebox_agent_slots_busy", "Tasks started and not yet reported.", AGENT_LABELS)
TASKS_BUFFERED = Gauge("scalebox_agent_tasks_buffered",
                       "Tasks fetched and waiting for a slot (or for their retry delay or admission re-check).",
                       AGENT_LABELS)
SUSPENDED = Gauge("scalebox_agent_suspended", "1 while the module is suspended (error budget or command).",
                  AGENT_LABELS)
MODULE_BACKLOG = Gauge("scalebox_agent_module_backlog",
                       "Tasks of the agent's module in Kafka not yet done by any of its agents (read when scraped; "
                       "every agent of a module reports the same: take the max).", AGENT_LABELS)
HELD_BY_BACKPRESSURE = Gauge("scalebox_agent_held_by_backpressure",
                             "1 while a module this one feeds holds more tasks than its max_backlog.", AGENT_LABELS)

_served: set[int] = set()


def event_type_label(event_type: str) -> str:
    """A bounded label value for an event type (unknown types count as `other`)."""
    return event_type if event_type in EVENT_TYPES else "other"


METRICS_ADDR_ENV = "SCALEBOX_METRICS_ADDR"
DEFAULT_METRICS_ADDR = "127.0.0.1"


def serve(port: int, addr: str | None = None) -> None:
    """Expose the default registry over HTTP on `port` (once per port and process), on `addr`, else
    `SCALEBOX_METRICS_ADDR`, else loopback."""
    if port in _served:
        return
    start_http_server(port, addr=addr or os.environ.get(METRICS_ADDR_ENV, "").strip() or DEFAULT_METRICS_ADDR)
    _served.add(port)
