"""The projector: consumes the events topic into PostgreSQL, exactly once.

Each batch is applied in one database transaction together with the consumer positions, which live in
PostgreSQL (`offsets.OffsetStore`), not in Kafka: after a crash or a database outage the projector waits for
the database, reconnects and seeks back to the positions it holds, and the event-id table makes any
overlap a no-op. Input never stops it: undecodable records, and decodable events the SQL refuses (found
by re-applying a failed batch one event at a time), go to the dead-letter topic and `dead_letters`
(`dead_letters.DeadLetterSink`). How a batch is applied is in `strategies.py`.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from scalebox_stream import metrics
from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.projector.batch import Batch, build_batch
from scalebox_stream.projector.database import Connect, Database
from scalebox_stream.projector.dead_letters import DeadLetterSink
from scalebox_stream.projector.errors import Outage
from scalebox_stream.projector.memory import FreeMemoryReturner, return_free_memory
from scalebox_stream.projector.migrate import migrate
from scalebox_stream.projector.offsets import OffsetStore
from scalebox_stream.projector.settings import ProjectorSettings
from scalebox_stream.projector.stats import ProjectorStats, observe_batch
from scalebox_stream.projector.strategies import Applied, Applier, PipelinedBatch

__all__ = ["PROJECTOR_GROUP", "Projector", "ProjectorSettings", "ProjectorStats"]

log = logging.getLogger(__name__)

PROJECTOR_GROUP = "sbx.projector"


def _tune_gc() -> None:
    """Keep the garbage collector from re-scanning what exists before the loop starts (modules, caches, a
    caller's data) and from running every few hundred allocations: a batch allocates thousands of objects,
    none of them in cycles, and freed by reference counting."""
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), gen1, gen2)


class Projector:
    """Consumes `sbx.events` (or `topic`) into the task perspective.

    Building one does no I/O; `start` (called by `run` if not called before) serves the metrics, creates the
    Kafka clients, connects to PostgreSQL and migrates it. The clients and the connection come from the
    factories handed in; `release_memory` hands the C allocator's free memory back to the system, at most every
    `settings.trim_interval_s` while batches come and soon after they stop (`memory.py`)."""

    def __init__(self, bootstrap: str, dsn: str, settings: ProjectorSettings | None = None, *,
                 group: str = PROJECTOR_GROUP, topic: str = EVENTS_TOPIC, metrics_port: int | None = None,
                 consumer_factory: Callable[[dict], Consumer] = Consumer,
                 producer_factory: Callable[[dict], Producer] = Producer,
                 connect: Connect = psycopg.connect,
                 release_memory: Callable[[], object] = return_free_memory) -> None:
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.settings = settings or ProjectorSettings()
        self.metrics_port = metrics_port
        self.codec = EventCodec()
        self.stats = ProjectorStats()
        self._stop = threading.Event()
        self._consumer_factory, self._producer_factory = consumer_factory, producer_factory
        self.db = Database(dsn, self.settings, self._stop, connect)
        self.offsets = OffsetStore(topic)
        self.consumer: Consumer | None = None
        self.sink: DeadLetterSink | None = None
        self.applier: Applier | None = None
        self._in_flight: PipelinedBatch | None = None
        self._rewind_due = False
        self.memory = FreeMemoryReturner(self.settings.trim_interval_s, release_memory)

    @property
    def conn(self) -> psycopg.Connection | None:
        """The current PostgreSQL connection (None before `start`)."""
        return self.db.conn

    def start(self) -> bool:
        """Serve metrics, create the Kafka clients, connect to PostgreSQL (waiting up to `start_wait_s`),
        migrate and subscribe. Returns False if a stop was requested while waiting for PostgreSQL."""
        if self.applier is not None:
            return True
        if self.consumer is None:
            if self.metrics_port is not None:
                metrics.serve(self.metrics_port)
            self.consumer = self._consumer_factory(
                consumer_config(self.bootstrap, self.group, **self.settings.consumer_overrides()))
            self.sink = DeadLetterSink(self._producer_factory(producer_config(self.bootstrap)),
                                       self.settings.dead_letter_flush_s)
        assert self.sink is not None
        if not self.db.open(self.settings.start_wait_s):
            return False
        assert self.db.conn is not None
        migrate(self.db.conn)
        self.applier = Applier(self.db, self.offsets, self.sink, self.settings.conflict_retries,
                               self.settings.start_wait_s)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        return True

    def request_stop(self, *_: object) -> None:
        """Stop after the current batch (signal-handler safe)."""
        self._stop.set()

    # ----- loop ----------------------------------------------------------------------------------

    def run(self, until_caught_up: bool = False, install_signals: bool = True) -> ProjectorStats:
        """Project batches until stopped (or, with `until_caught_up`, until every partition is at its end)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        try:
            if not self.start():
                return self.stats
            _tune_gc()
            while not self._stop.is_set():
                if self.step(until_caught_up):
                    break
        finally:
            self._finish()
        return self.stats

    def step(self, until_caught_up: bool = False) -> bool:
        """Read a batch (while the server applies the one sent before), settle the one sent before, send this
        one. True once caught up (with `until_caught_up`)."""
        try:
            if self._rewind_due and not self._recover():
                return False
            batch = self._read()
            if self._rewind_due:  # a rebalance found PostgreSQL down: the batch is read again after rewinding
                return False
            self._settle()
            if batch is not None:
                self._submit(batch)
                self.memory.after_batch()
            else:
                self.memory.idle()
            if until_caught_up and self.offsets.caught_up():
                self._settle()
                return True
        except (Outage, psycopg.Error) as exc:
            log.warning("PostgreSQL unavailable (%s); will reconnect and rewind", str(exc).strip())
            self._abandon()
            self._rewind_due = True
            self._stop.wait(self.settings.outage_pause_s)
        return False

    def _fetch(self) -> list[Message]:
        """The records fetched already (up to a batch); if none, wait for the next and take what came with it.

        (`consume` with a count waits for the whole count or its timeout: live views would lag by it.)"""
        assert self.consumer is not None
        size = self.settings.batch_size
        messages = self.consumer.consume(size, 0)
        if messages:
            return messages
        first = self.consumer.poll(self.settings.poll_timeout_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(size - 1, 0)] if size > 1 else [first]

    def _read(self) -> Batch | None:
        """The next batch, decoded and folded (pure CPU work, done while the server applies the previous one)."""
        records = []
        at_end = self.offsets.at_end
        for message in self._fetch():
            error = message.error()
            if error is None:
                records.append(message)
                at_end.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            else:
                log.warning("consumer error: %s", error)
        if not records:
            return None
        batch = build_batch(records, self.codec)
        self.stats.started(batch)
        return batch

    def _submit(self, batch: Batch) -> None:
        assert self.applier is not None
        sent = self.applier.submit(batch)
        if isinstance(sent, Applied):
            self._committed(batch, sent)
        else:
            self._in_flight = sent

    def _settle(self) -> None:
        """Wait for the batch in flight; if the server refused it, it is applied again the careful ways."""
        flight, self._in_flight = self._in_flight, None
        if flight is not None:
            assert self.applier is not None
            self._committed(flight.batch, self.applier.settle(flight))

    def _abandon(self) -> None:
        """Forget the batch in flight (its outcome is read back from the stored positions)."""
        flight, self._in_flight = self._in_flight, None
        if flight is not None:
            flight.abandon()

    def _committed(self, batch: Batch, applied: Applied) -> None:
        """Count a committed batch and move the positions it covers."""
        assert self.sink is not None and self.consumer is not None
        self.offsets.advanced(batch.positions)
        self.stats.committed(batch, len(applied.fresh), len(applied.dead))
        observe_batch(batch, applied.fresh, self.stats.last_batch_at or batch.started)
        self.sink.count_committed(applied.dead)
        metrics.LAG.set(self.offsets.lag(self.consumer))

    def _finish(self) -> None:
        try:
            self._settle()
        except Exception as exc:  # positions stay where PostgreSQL has them: nothing is lost
            log.warning("last batch not committed (%s)", exc)
            self._abandon()
        if self.consumer is not None:
            self.consumer.close()
        if self.sink is not None:
            self.sink.close(self.settings.close_flush_s)
        self.db.close()

    # ----- rebalances and recovery ----------------------------------------------------------------

    def _settle_before_rebalance(self) -> None:
        """Settle the batch in flight before the assignment changes (a failure means: rewind later)."""
        try:
            self._settle()
        except Exception as exc:
            log.warning("batch in flight failed during a rebalance (%s); will rewind", exc)
            self._abandon()
            self._rewind_due = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_before_rebalance()
        if not self.offsets.assign(consumer, None if self.db.gone else self.db.conn, partitions):
            self._rewind_due = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_before_rebalance()
        self.offsets.revoke(consumer, partitions)

    def _recover(self) -> bool:
        """Wait for PostgreSQL, reconnect if the connection is gone, and rewind to the stored positions.
        False if a stop was requested while waiting."""
        if not self.db.gone:
            try:  # a transaction left aborted (by an error mid-pipeline) would refuse every statement
                self.db.rollback()
            except psycopg.Error:
                self.db.close()
        if self.db.gone:
            if not self.db.reopen(-1):
                return False
            self.stats.reconnected()
            log.warning("reconnected to PostgreSQL; rewinding to the stored positions")
        assert self.consumer is not None and self.db.conn is not None
        self.offsets.rewind(self.consumer, self.db.conn)
        self._rewind_due = False
        return True
