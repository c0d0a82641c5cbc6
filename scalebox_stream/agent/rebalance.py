"""The agent's group consumer and the partitions it holds: assign, revoke, lost, pausing, and rejoining.

On assignment each partition gets a tracker that starts at the group's committed position and reads the lease
record in its commit metadata (finished offsets to skip, attempts a previous owner was running: see `offsets`).
On a revoke the running tasks of the revoked partitions get up to `revoke_drain_s` to finish and be committed;
then the partitions are forgotten (a late report is dropped by the commit unit). Lost partitions are forgotten
at once. When the broker has refused the agent's commits as from a non-member for long (see
`policy.membership`), the agent gives its partitions up and joins again with a fresh consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from scalebox_stream.agent.checkpoint import Checkpoint
from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.agent.offsets import PartitionTracker, parse_metadata
from scalebox_stream.agent.settings import AgentSettings
from scalebox_stream.policy.kafka_log import span
from scalebox_stream.policy.membership import absent_since, must_rejoin

log = logging.getLogger(__name__)


class Rebalance:
    """Owns the consumer (replaced on a rejoin) and keeps the commit unit's trackers in step with what it holds."""

    def __init__(self, new_consumer: Callable[[], Any], topics: list[str], checkpoint: Checkpoint,
                 dispatcher: Dispatcher, settings: AgentSettings, stop: threading.Event, name: str = "") -> None:
        self.name = name  # the agent's id, for the log
        self._new_consumer = new_consumer
        self.topics = topics
        self.checkpoint = checkpoint
        self.dispatcher = dispatcher
        self.settings = settings
        self._stop = stop
        self.consumer = new_consumer()
        self.assignments = 0
        """How many assignments this agent received (a task remembers the one it came with)."""
        self.paused = False
        self.absent_since: float | None = None  # since when commits are refused as from a non-member

    def subscribe(self) -> None:
        """Join the group with the current consumer."""
        self.consumer.subscribe(self.topics, on_assign=self.on_assign, on_revoke=self.on_revoke,
                                on_lost=self.on_lost)

    # ----- callbacks (poll thread, inside the consumer's poll) ---------------------------------------

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Track newly assigned partitions from their committed positions and lease records."""
        if consumer is not self.consumer:  # a replaced consumer closing (see rejoin)
            return
        self.assignments += 1
        self.absent_since = None  # a membership of its own
        log.info("partitions assigned: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        for tp in self._committed(consumer, partitions):
            start = tp.offset if tp.offset >= 0 else 0
            self.checkpoint.trackers[(tp.topic, tp.partition)] = PartitionTracker(
                start, parse_metadata(start, tp.metadata), assignment=self.assignments)
        # librdkafka keeps a partition's pause flag across revoke and re-assignment: set it explicitly.
        (consumer.pause if self.paused else consumer.resume)(partitions)

    def _committed(self, consumer: Any, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed positions of newly assigned partitions; asked again while the broker cannot
        answer (it may be restarting: its coordinator takes a while to load; or an unfinished transaction holds
        the group's offsets), until the agent is told to stop. Each failed request is logged naming the
        partitions, the time waited so far, and the likely cause. (Raised from the assignment callback, the
        error ended the agent.)"""
        began, attempts = time.monotonic(), 0
        while True:
            try:
                return consumer.committed(partitions, timeout=self.settings.committed_timeout_s)
            except KafkaException as exc:
                if self._stop.is_set():
                    raise
                attempts += 1
                log.warning("%s", committed_wait(partitions, time.monotonic() - began, exc.args[0].str(),
                                                 exc.args[0].code() == KafkaError._TIMED_OUT, attempts))

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Give partitions back: let their running tasks finish (within a budget) and commit, then let go."""
        if consumer is not self.consumer:
            return
        log.info("partitions revoked: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.dispatcher.forget(lambda source: source not in revoked)  # no slot may start another task of theirs
        deadline = time.monotonic() + (0 if self._stop.is_set() else self.settings.revoke_drain_s)
        self.checkpoint.publish()
        while self.dispatcher.running_on(revoked) and time.monotonic() < deadline:
            time.sleep(0.02)
            self.checkpoint.publish()
        if self.dispatcher.running_on(revoked):
            log.warning("tasks still running on revoked partitions: the next owner will run them again")
        self.forget(partitions)

    def on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke (session lost): nothing of theirs may be committed."""
        if consumer is not self.consumer:
            return
        log.warning("partitions lost: %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        self.forget(partitions)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Let partitions go: their trackers, their buffered and delayed tasks."""
        try:  # a partition given up while paused would come back paused (see on_assign)
            self.consumer.resume(partitions)
        except KafkaException as exc:
            log.debug("resuming partitions given up: %s", exc)
        trackers = self.checkpoint.trackers
        with self.dispatcher.lock:
            self.checkpoint.forget((tp.topic, tp.partition) for tp in partitions)
            self.dispatcher.forget(trackers.__contains__)

    # ----- fetching ------------------------------------------------------------------------------------

    def pause_or_resume(self, hold: bool, buffered: int, target: int, cap: int) -> None:
        """Pause fetching when `hold` or `cap` tasks wait in memory, resume when back at `target` (hysteresis).

        Pausing per task would be ruinous: after a resume librdkafka fetches again only after a delay.
        Tasks buffered here are uncommitted, so a crash loses none of them.
        """
        if not self.paused and (hold or buffered >= cap):
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif self.paused and not hold and buffered <= target:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    # ----- membership ----------------------------------------------------------------------------------

    def note_membership(self, present: bool | None) -> None:
        """Take what a transaction said about this agent's membership (see `policy.membership`)."""
        self.absent_since = absent_since(present, self.absent_since, time.monotonic())

    def membership_lost(self) -> bool:
        """Whether the broker has refused this agent's membership long enough to rejoin."""
        return must_rejoin(self.absent_since, time.monotonic(), self.settings.rejoin_after_s)

    def rejoin(self) -> None:
        """The broker has refused this agent's commits as from a non-member for a long while, yet the consumer
        has not noticed (see `policy.membership`): treat its partitions as lost and join again with a fresh
        consumer. The old one is closed on a thread of its own, abandoned if it never returns."""
        refused_s = 0.0 if self.absent_since is None else time.monotonic() - self.absent_since
        log.error("the broker has refused agent %s's commits as from a non-member of its group for %.0fs; "
                  "joining again with a new consumer", self.name, refused_s)
        held = [TopicPartition(topic, partition) for topic, partition in self.checkpoint.trackers]
        self.forget(held)
        stale, self.consumer, self.absent_since = self.consumer, self._new_consumer(), None
        self.subscribe()
        threading.Thread(target=_close_quietly, args=(stale,), name="stale-consumer", daemon=True).start()


def _close_quietly(consumer: Any) -> None:
    """Close a consumer that was replaced; whatever it says, it no longer matters."""
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.info("closing the replaced consumer: %s", exc)


NAMED_PARTITIONS = 8
"""A log line names at most this many partitions (and counts the rest)."""


def committed_wait(partitions: list[TopicPartition], waited_s: float, error: str, timed_out: bool,
                   attempts: int) -> str:
    """The line for the `attempts`-th failed request for the committed positions of `partitions`, `waited_s` after
    the first. A timeout most likely means a transaction on the group's offsets was left unfinished (a broker
    restarted, or an agent was killed, in the middle of a commit): the broker answers once it is ended. The
    first such line says so and what to do; the next ones repeat the remedy briefly."""
    names = [f"{tp.topic}[{tp.partition}]" for tp in partitions]
    shown = ", ".join(names[:NAMED_PARTITIONS]) + (f" and {len(names) - NAMED_PARTITIONS} more"
                                                    if len(names) > NAMED_PARTITIONS else "")
    head = f"committed positions of {shown} not available after {span(waited_s)} ({error})"
    if not timed_out:
        return f"{head}; asking again"
    if attempts == 1:
        return (f"{head}: most likely a transaction on the group's offsets was left unfinished (a broker restart "
                f"or a killed agent in the middle of a commit); the broker answers once it is ended (an open one "
                f"at its transaction timeout, a hanging one only when aborted): `scalebox local repair` on the "
                f"local broker, Kafka's kafka-transactions.sh find-hanging and abort on another; asking again")
    return f"{head}; still waiting (an unfinished transaction? `scalebox local repair` on the local broker)"
