"""An agent's Prometheus metrics, bound once to its app, module, cluster and host (collectors: `metrics`).

Counting costs a few microseconds per task; the gauges are read from the agent only when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from scalebox_stream import metrics
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.policy.outcome import OUTCOMES


class AgentTelemetry:
    """What one agent counts: attempts started and ended, refusals, losses, dead letters, transactions."""

    def __init__(self, identity: AgentIdentity) -> None:
        self.labels = (identity.app, identity.module, identity.cluster, identity.host)
        self._started = metrics.ATTEMPTS_STARTED.labels(*self.labels)
        self._seconds = metrics.ATTEMPT_SECONDS.labels(*self.labels)
        self._refusals = metrics.ADMISSION_REFUSALS.labels(*self.labels)
        self._lost = metrics.LOST_ATTEMPTS.labels(*self.labels)
        self._dead_letters = metrics.AGENT_DEAD_LETTERS.labels(*self.labels)
        self._transaction_seconds = metrics.TRANSACTION_SECONDS.labels(*self.labels)
        # Every label value exists from the start, at 0: a rate over a series that appears only with its first
        # failure would miss that failure.
        self._finished: dict[str, Counter] = {o: metrics.ATTEMPTS_FINISHED.labels(*self.labels, o) for o in OUTCOMES}
        self._transactions = {o: metrics.TRANSACTIONS.labels(*self.labels, o) for o in ("committed", "failed")}

    def attempt_started(self) -> None:
        """A slot started an attempt (it was admitted)."""
        self._started.inc()

    def attempt_finished(self, outcome: str, seconds: float) -> None:
        """An attempt ended with `outcome` (succeeded, failed, timed_out, error) after `seconds` in its slot."""
        child = self._finished.get(outcome)
        if child is None:
            child = self._finished[outcome] = metrics.ATTEMPTS_FINISHED.labels(*self.labels, outcome)
        child.inc()
        self._seconds.observe(seconds)

    def admission_refused(self) -> None:
        """An admission check refused a task."""
        self._refusals.inc()

    def attempt_lost(self) -> None:
        """An attempt was found lost with a dead agent."""
        self._lost.inc()

    def dead_letter(self) -> None:
        """An undecodable task message went to the dead-letter topic."""
        self._dead_letters.inc()

    def transaction(self, seconds: float, committed: bool) -> None:
        """A transaction ended, committed or failed, after `seconds`."""
        self._transactions["committed" if committed else "failed"].inc()
        if committed:
            self._transaction_seconds.observe(seconds)

    def watch(self, slots: int, busy: Callable[[], float], buffered: Callable[[], float],
              suspended: Callable[[], float], held: Callable[[], float], backlog: Callable[[], float]) -> None:
        """Gauges read at scrape time: slots, slots busy, tasks buffered, suspended, held by backpressure, and the
        module's backlog in Kafka."""
        metrics.SLOTS.labels(*self.labels).set(slots)
        metrics.SLOTS_BUSY.labels(*self.labels).set_function(busy)
        metrics.TASKS_BUFFERED.labels(*self.labels).set_function(buffered)
        metrics.SUSPENDED.labels(*self.labels).set_function(suspended)
        metrics.HELD_BY_BACKPRESSURE.labels(*self.labels).set_function(held)
        metrics.MODULE_BACKLOG.labels(*self.labels).set_function(backlog)
