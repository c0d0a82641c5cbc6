"""The projector: consumes the events topic into PostgreSQL, exactly once.

Each batch is applied in one database transaction together with the consumer positions, which live in
PostgreSQL (`projector_offsets`), not in Kafka: after a crash or a database outage the projector waits for
the database, reconnects and seeks back to the positions it holds, and the event-id table makes any
overlap a no-op. Input never stops it: undecodable records, and decodable events the SQL refuses (found
by re-applying a failed batch one event at a time), go to the dead-letter topic and `dead_letters`.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import threading
import time
import uuid
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from operator import attrgetter

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from scalebox_stream import metrics
from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.kafka.config import consumer_config, producer_config
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC
from scalebox_stream.projector.apply import (
    apply_events,
    apply_fold,
    merge_staged,
    prepare_session,
    record_new_event_ids,
    record_staged_event_ids_expecting_fresh,
    stage_event_ids,
    stage_fold,
)
from scalebox_stream.projector.errors import is_conflict, is_outage
from scalebox_stream.projector.fold import Fold, fold
from scalebox_stream.projector.migrate import migrate

log = logging.getLogger(__name__)

PROJECTOR_GROUP = "sbx.projector"
UNDECODABLE, UNPROJECTABLE = "undecodable", "unprojectable"
CONFLICT_RETRIES = 5
"""Times a batch that clashed with another projector's transaction is applied again before waiting."""
HEARTBEAT_INTERVAL_MS = 250
"""How soon a member learns that the group is rebalancing (another projector process joined or left)."""
BATCH_WAIT_MS = 100
"""How long the broker lets events gather for the projector before it answers its fetch (unless GATHER_BYTES
came first), so the projection lags the log by up to this much more. Answered at once, every agent's commit
woke the projector and PostgreSQL just as the task it released started in the next module: with a 100 ms
wait the latency benchmark's three-module p50 fell from 35-36 ms to 28 ms on the 2-core VM, and a busy
pipeline projects in fewer, larger transactions."""
GATHER_BYTES = 1 << 20
"""A fetch is answered as soon as this many bytes of events wait (a busy log does not wait BATCH_WAIT_MS)."""
_event_type = attrgetter("event_type")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _tune_gc() -> None:
    """Keep the garbage collector from re-scanning what exists before the loop starts (modules, caches, a
    caller's data) and from running every few hundred allocations: a batch allocates thousands of objects,
    none of them in cycles, and freed by reference counting."""
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), gen1, gen2)


@dataclass
class ProjectorStats:
    """Counters of one projector process."""

    batches: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    db_reconnects: int = 0
    first_batch_at: float | None = None  # time.monotonic() when the first batch began
    last_batch_at: float | None = None   # ... and when the last one was committed

    def rate(self) -> float:
        """Events per second between the first batch's start and the last commit."""
        if self.first_batch_at is None or self.last_batch_at is None or self.last_batch_at <= self.first_batch_at:
            return 0.0
        return self.events / (self.last_batch_at - self.first_batch_at)


class _Outage(Exception):
    """PostgreSQL failed for reasons unrelated to the batch: wait, reconnect, rewind."""


class _Stopped(Exception):
    """A stop was requested while waiting for PostgreSQL."""


DeadLetter = tuple[Message, str, str]  # (record, kind, reason)


@dataclass
class _Batch:
    """Records consumed together, decoded and folded, with the positions after them."""

    records: list[Message]
    started: float
    positions: dict[int, int] = field(default_factory=dict)
    events: list[tuple[Message, Event]] = field(default_factory=list)
    poison: list[DeadLetter] = field(default_factory=list)
    fold: Fold | None = None


class Projector:
    """Consumes `sbx.events` (or `topic`) into the task perspective."""

    def __init__(self, bootstrap: str, dsn: str, batch_size: int = 1000, group: str = PROJECTOR_GROUP,
                 topic: str = EVENTS_TOPIC, metrics_port: int | None = None,
                 batch_wait_ms: int = BATCH_WAIT_MS) -> None:
        self.dsn = dsn
        self.batch_size = batch_size
        self.topic = topic
        self.codec = EventCodec()
        self.stats = ProjectorStats()
        self._stop = threading.Event()
        self._eof: set[int] = set()
        self._assigned: list[int] = []
        self._positions: dict[int, int] = {}
        self._needs_rewind = False
        self._pending: _Batch | None = None
        self._pipeline: AbstractContextManager | None = None
        if metrics_port is not None:
            metrics.serve(metrics_port)
        # Eager assignment: on_assign replaces the positions with the ones PostgreSQL holds. A member that
        # joins after the group formed (processes started together often miss the first round) gets its
        # partitions only when the others learn of it by heartbeat: librdkafka's default 3 s left one of two
        # processes projecting alone for the first 3 s of a 10 s replay.
        gather = {"fetch.wait.max.ms": batch_wait_ms, "fetch.min.bytes": GATHER_BYTES} if batch_wait_ms > 0 else {}
        self.consumer = Consumer(consumer_config(
            bootstrap, group, **{"enable.partition.eof": True, "partition.assignment.strategy": "range",
                                 "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS, **gather}))
        self.dead_letter_producer = Producer(producer_config(bootstrap))
        self.conn = self._connect(wait_s=60)
        migrate(self.conn)

    def _connect(self, wait_s: float) -> psycopg.Connection:
        """Connect, retrying while the database is unreachable (up to `wait_s`, forever if negative)."""
        deadline = time.monotonic() + wait_s
        delay = 0.2
        while True:
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                prepare_session(conn)
                return conn
            except psycopg.OperationalError as exc:
                if wait_s >= 0 and time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL unreachable (%s); retrying in %.1fs", str(exc).strip(), delay)
                if self._stop.wait(delay):
                    raise _Stopped() from exc
                delay = min(delay * 2, 5.0)

    def request_stop(self, *_: object) -> None:
        """Stop after the current batch (signal-handler safe)."""
        self._stop.set()

    # ----- positions -----------------------------------------------------------------------------

    def _stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM projector_offsets WHERE topic = %s AND partition = ANY(%s)",
            (self.topic, partitions)).fetchall()
        return dict(rows)

    def _settle(self) -> None:
        """Settle the batch in flight before the assignment changes (a failure means: rewind later)."""
        try:
            self._confirm()
        except Exception as exc:
            log.warning("batch in flight failed during a rebalance (%s); will rewind", exc)
            self._abandon()
            self._needs_rewind = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle()
        try:
            stored: dict[int, int] | None = self._stored_offsets([tp.partition for tp in partitions])
        except psycopg.Error as exc:  # the database is down: hold the partitions until it is back
            log.warning("cannot read stored positions (%s); pausing until PostgreSQL is back", str(exc).strip())
            stored, self._needs_rewind = None, True
        for tp in partitions:
            tp.offset = (stored or {}).get(tp.partition, OFFSET_BEGINNING)
        self._assigned = sorted({*self._assigned, *(tp.partition for tp in partitions)})
        self._eof -= {tp.partition for tp in partitions}
        consumer.assign(partitions)
        if stored is None:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle()
        gone = {tp.partition for tp in partitions}
        self._assigned = [p for p in self._assigned if p not in gone]
        consumer.unassign()

    def _rewind(self) -> None:
        """Restart every assigned partition at the position PostgreSQL holds (dropping fetched records)."""
        stored = self._stored_offsets(self._assigned)
        partitions = [TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in self._assigned]
        if partitions:
            self.consumer.assign(partitions)
            self.consumer.resume(partitions)
        self._positions = {p: o for p, o in stored.items() if p in self._assigned}
        self._eof.clear()
        self._needs_rewind = False

    def _recover(self) -> None:
        """Wait for PostgreSQL, reconnect if the connection is gone, and rewind to the stored positions."""
        if not (self.conn.closed or self.conn.broken):
            try:  # a transaction left aborted (by an error mid-pipeline) would refuse every statement
                self._rollback()
            except psycopg.Error:
                self.conn.close()
        if self.conn.closed or self.conn.broken:
            self.conn.close()
            self.conn = self._connect(wait_s=-1)
            self.stats.db_reconnects += 1
            metrics.DB_RECONNECTS.inc()
            log.warning("reconnected to PostgreSQL; rewinding to the stored positions")
        self._rewind()

    # ----- loop ----------------------------------------------------------------------------------

    def run(self, until_caught_up: bool = False, install_signals: bool = True) -> ProjectorStats:
        """Project batches until stopped (or, with `until_caught_up`, until every partition is at its end)."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        _tune_gc()
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                try:
                    if self._needs_rewind:
                        self._recover()
                    batch = self._prepare(self._fetch())
                    if self._needs_rewind:
                        continue
                    self._confirm()  # the previous batch was applied by the server while this one was decoded
                    if batch is not None:
                        self._send(batch)
                    if until_caught_up and self._assigned and set(self._assigned) <= self._eof:
                        self._confirm()
                        break
                except (_Outage, psycopg.Error) as exc:
                    log.warning("PostgreSQL unavailable (%s); will reconnect and rewind", str(exc).strip())
                    self._abandon()
                    self._needs_rewind = True
                    self._stop.wait(0.5)
                except _Stopped:
                    break
        finally:
            self._finish()
        return self.stats

    def _fetch(self) -> list[Message]:
        """The records fetched already (up to a batch); if none, wait for the next and take what came with it.

        (`consume` with a count waits for the whole count or its timeout: live views would lag by it.)"""
        messages = self.consumer.consume(self.batch_size, 0)
        if messages:
            return messages
        first = self.consumer.poll(0.2)
        if first is None:
            return []
        return [first, *self.consumer.consume(self.batch_size - 1, 0)] if self.batch_size > 1 else [first]

    def _finish(self) -> None:
        try:
            self._confirm()
        except Exception as exc:  # positions stay where PostgreSQL has them: nothing is lost
            log.warning("last batch not committed (%s)", exc)
            self._abandon()
        self.consumer.close()
        self.dead_letter_producer.flush(10)
        self.conn.close()

    def _prepare(self, messages: list[Message]) -> _Batch | None:
        """Decode and fold a batch (pure CPU work, done while the server applies the previous batch)."""
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
                self._eof.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                self._eof.add(message.partition())
            else:
                log.warning("consumer error: %s", error)
        if not records:
            return None
        batch = _Batch(records, started=time.monotonic())
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = batch.started
        for message in records:
            partition = message.partition()
            batch.positions[partition] = max(batch.positions.get(partition, 0), message.offset() + 1)
        batch.events, batch.poison = self._decode(records)
        try:
            batch.fold = fold([e for _, e in batch.events])
        except Exception as exc:  # an event the fold refuses: found by the one-by-one path
            log.warning("cannot fold batch (%s)", exc)
        return batch

    def _send(self, batch: _Batch) -> None:
        """Stage the batch (COPY, waits for the server), then send its merges, positions and COMMIT without
        waiting: the server applies them while the next batch is decoded. `_confirm` collects the outcome."""
        if batch.poison or batch.fold is None:
            self._write(batch)
            return
        try:
            with self.conn.cursor() as cur:
                cur.execute("BEGIN")
                stage_event_ids(cur, [e for _, e in batch.events])
                stage_fold(cur, batch.fold)
                self._pipeline = self.conn.pipeline()
                self._pipeline.__enter__()
                self._pending = batch
                record_staged_event_ids_expecting_fresh(cur)
                merge_staged(cur, batch.fold)
                self._store_positions(cur, batch.positions)
                cur.execute("COMMIT")
        except Exception as exc:  # refused while being sent (a value psycopg or the server refuses, say)
            self._abandon()
            self._after_failed_pipeline(exc)
            self._write(batch)

    def _confirm(self) -> None:
        """Wait for the batch in flight; if the server refused it, apply it again the careful way."""
        batch, pipeline = self._pending, self._pipeline
        if batch is None or pipeline is None:
            return
        self._pending = self._pipeline = None
        try:
            pipeline.__exit__(None, None, None)
        except Exception as exc:
            self._after_failed_pipeline(exc)
            self._write(batch)
            return
        self._done(batch, [e for _, e in batch.events], [])

    def _after_failed_pipeline(self, exc: Exception) -> None:
        """Get ready to apply a pipelined batch again the careful way, or raise `_Outage`.

        The connection is replaced: after an error in a pipeline, psycopg can believe a statement prepared
        whose PREPARE the server skipped, and every later batch would fail on it ("prepared statement
        _pg3_N does not exist")."""
        conflict = is_conflict(exc) and not (self.conn.closed or self.conn.broken)
        if is_outage(exc, self.conn) and not conflict:
            raise _Outage(str(exc)) from exc
        if conflict:
            metrics.BATCH_CONFLICTS.inc()
        elif not isinstance(exc, psycopg.errors.UniqueViolation):  # a replayed event: expected
            log.warning("batch failed (%s: %s); applying it again", type(exc).__name__, str(exc).strip())
        self.conn.close()
        self.conn = self._connect(wait_s=60)

    def _rollback(self) -> None:
        """End a transaction the server or the client aborted."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def _abandon(self) -> None:
        """Forget the batch in flight (its outcome is read back from the stored positions)."""
        pipeline, self._pipeline, self._pending = self._pipeline, None, None
        if pipeline is not None:
            try:
                pipeline.__exit__(None, None, None)
            except Exception as exc:
                log.debug("abandoned batch: %s", exc)

    def _write(self, batch: _Batch) -> None:
        """Apply a batch synchronously (ids first); if the SQL refuses it, apply it event by event."""
        try:
            self._commit_despite_conflicts(batch)
        except _Outage:
            raise
        except Exception as exc:
            if is_outage(exc, self.conn):
                raise _Outage(str(exc)) from exc
            log.warning("batch of %d event(s) failed (%s: %s); applying it event by event to find the culprit",
                        len(batch.events), type(exc).__name__, str(exc).strip())
            try:
                self._commit(batch, isolate=True)
            except _Outage:
                raise
            except Exception as again:
                if is_outage(again, self.conn):
                    raise _Outage(str(again)) from again
                raise

    def _commit_despite_conflicts(self, batch: _Batch) -> None:
        """`_commit` the batch, again at once (up to `CONFLICT_RETRIES` times) if it clashed with another
        projector's transaction: the other's rows are committed by then, and the merge updates them."""
        for retry in range(CONFLICT_RETRIES + 1):
            try:
                self._commit(batch, isolate=False)
                return
            except Exception as exc:
                if not is_conflict(exc) or retry == CONFLICT_RETRIES or self.conn.broken:
                    raise
                metrics.BATCH_CONFLICTS.inc()
                log.info("batch clashed with another projector (%s); applying it again", exc.sqlstate)

    def _decode(self, records: list[Message]) -> tuple[list[tuple[Message, Event]], list[DeadLetter]]:
        """Decoded events (first of each event id, ids normalised) and the records that are not events."""
        events: dict[str, tuple[Message, Event]] = {}
        poison: list[DeadLetter] = []
        for message in records:
            try:
                event = self.codec.decode(message.value())
            except DecodeError as exc:
                poison.append((message, UNDECODABLE, str(exc)))
                continue
            try:
                if not _CANONICAL_UUID.fullmatch(event.event_id):
                    event.event_id = str(uuid.UUID(event.event_id))
            except ValueError:
                poison.append((message, UNPROJECTABLE, f"event_id {event.event_id!r} is not a UUID"))
                continue
            events.setdefault(event.event_id, (message, event))
        return list(events.values()), poison

    def _store_positions(self, cur: psycopg.Cursor, positions: dict[int, int]) -> None:
        cur.execute(
            """INSERT INTO projector_offsets (topic, partition, next_offset)
               SELECT %b, * FROM unnest(%b::int[], %b::bigint[])
               ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset""",
            (self.topic, list(positions), list(positions.values())))

    def _commit(self, batch: _Batch, isolate: bool) -> None:
        """Apply one batch and store the positions after it, in one transaction (synchronously)."""
        dead = list(batch.poison)
        with self.conn.transaction(), self.conn.cursor() as cur:
            if isolate:
                fresh, rejected = self._apply_each(cur, batch.events)
                dead += rejected
            else:
                events = [e for _, e in batch.events]
                new_ids = record_new_event_ids(cur, events)
                fresh = [e for e in events if e.event_id in new_ids]
                apply_fold(cur, fold(fresh))
            if dead:
                cur.executemany(
                    """INSERT INTO dead_letters (topic, partition, "offset", reason) VALUES (%s, %s, %s, %s)
                       ON CONFLICT DO NOTHING""",
                    [(m.topic(), m.partition(), m.offset(), f"{kind}: {reason}") for m, kind, reason in dead])
            self._store_positions(cur, batch.positions)
            if dead:  # before the commit: a crash in between re-sends them (at least once), never loses them
                self._dead_letter(dead)
        self._done(batch, fresh, dead)

    def _done(self, batch: _Batch, fresh: list[Event], dead: list[DeadLetter]) -> None:
        """Count a committed batch."""
        self._positions.update(batch.positions)
        self.stats.batches += 1
        self.stats.events += len(batch.records)
        self.stats.applied += len(fresh)
        self.stats.duplicates += len(batch.events) - len(fresh)
        self.stats.dead_letters += len(dead)
        finished = time.monotonic()
        self.stats.last_batch_at = finished
        metrics.BATCHES.inc()
        metrics.BATCH_SECONDS.observe(finished - batch.started)
        metrics.DUPLICATE_EVENTS.inc(len(batch.events) - len(fresh))
        for event_type, n in Counter(map(_event_type, fresh)).items():
            metrics.PROJECTED_EVENTS.labels(metrics.event_type_label(event_type)).inc(n)
        for _, kind, _ in dead:
            metrics.DEAD_LETTERS.labels(kind).inc()
        self._update_lag()

    def _apply_each(self, cur: psycopg.Cursor,
                    events: list[tuple[Message, Event]]) -> tuple[list[Event], list[DeadLetter]]:
        """Apply events one at a time, each in a savepoint; the ones the SQL refuses are returned as dead."""
        fresh: list[Event] = []
        dead: list[DeadLetter] = []
        for message, event in events:
            try:
                with self.conn.transaction():
                    if record_new_event_ids(cur, [event]):
                        apply_events(cur, [event])
                        fresh.append(event)
            except Exception as exc:
                if is_outage(exc, self.conn):
                    raise
                dead.append((message, UNPROJECTABLE, f"{type(exc).__name__}: {str(exc).strip()}"))
        return fresh, dead

    def _dead_letter(self, dead: list[DeadLetter]) -> None:
        for message, kind, reason in dead:
            log.error("%s event at %s[%d]@%d: %s", kind, message.topic(), message.partition(), message.offset(),
                      reason)
            self.dead_letter_producer.produce(DEAD_LETTER_TOPIC, key=message.key(), value=message.value(), headers=[
                ("error", reason.encode()), ("kind", kind.encode()), ("source_topic", message.topic().encode()),
                ("source_partition", str(message.partition()).encode()),
                ("source_offset", str(message.offset()).encode()), ("consumer", b"projector")])
        if self.dead_letter_producer.flush(30) != 0:
            raise _Outage("the dead-letter topic did not acknowledge")

    def _update_lag(self) -> None:
        """Set the lag gauge from the cached high watermarks (no broker round trip)."""
        lag = 0
        for partition in self._assigned:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high >= 0:
                lag += max(0, high - self._positions.get(partition, 0))
        metrics.LAG.set(lag)
