"""The ways a batch is applied, tried in order until one applies it:

1. `PipelinedBatch` (the fast path, for a batch without poison that folded): event ids and deltas are COPYed,
   then the merges, the positions and COMMIT are sent through a pipeline without waiting for them, so the
   server applies them while the projector decodes the next batch. It expects every event to be new.
2. `BulkApply`: one synchronous transaction that skips the events applied before, applied again at once if it
   clashed with another projector's transaction.
3. `IsolatingApply`: one savepoint per event; the events the SQL refuses are dead-lettered, the rest applied.

Each returns `Applied` or `Refused` (the batch's content was refused: try the next); a database outage
raises `errors.Outage` (nothing can be applied now: reconnect and rewind).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

import psycopg

from scalebox_stream import metrics
from scalebox_stream.events import Event
from scalebox_stream.projector.apply import (
    apply_events,
    apply_fold,
    merge_staged,
    record_new_event_ids,
    record_staged_event_ids_expecting_fresh,
    stage_event_ids,
    stage_fold,
)
from scalebox_stream.projector.batch import UNPROJECTABLE, Batch, DeadLetter
from scalebox_stream.projector.database import Database
from scalebox_stream.projector.dead_letters import DeadLetterSink
from scalebox_stream.projector.errors import Outage, is_conflict, is_outage
from scalebox_stream.projector.fold import fold
from scalebox_stream.projector.offsets import OffsetStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """The batch and its positions are committed: `fresh` were applied (the others were applied before),
    `dead` were dead-lettered."""

    fresh: list[Event]
    dead: list[DeadLetter]


@dataclass(frozen=True)
class Refused:
    """The batch's content was refused (nothing of it is committed)."""

    error: Exception


Result = Applied | Refused


def _connection(db: Database) -> psycopg.Connection:
    if db.conn is None:
        raise Outage("not connected to PostgreSQL")
    return db.conn


class PipelinedBatch:
    """One batch's transaction, sent through one psycopg pipeline and collected later.

    `send` stages the batch (COPY waits for the server) and sends its merges, positions and COMMIT without
    waiting; `wait` collects the outcome. As a context manager it sends on entry and waits on exit (or
    abandons the batch if the block raised)."""

    def __init__(self, db: Database, offsets: OffsetStore, batch: Batch) -> None:
        assert batch.fold is not None and not batch.poison, "the pipelined path takes clean, folded batches"
        self.db = db
        self.offsets = offsets
        self.batch = batch
        self.result: Result | None = None
        self._pipeline = ExitStack()

    def send(self) -> None:
        """Put the whole transaction on the wire (a refusal while sending is kept for `wait`)."""
        batch = self.batch
        assert batch.fold is not None
        try:
            conn = _connection(self.db)
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                stage_event_ids(cur, batch.plain_events)
                stage_fold(cur, batch.fold)
                self._pipeline.enter_context(conn.pipeline())
                record_staged_event_ids_expecting_fresh(cur)
                merge_staged(cur, batch.fold)
                self.offsets.store(cur, batch.positions)
                cur.execute("COMMIT")
        except Exception as exc:  # refused while being sent (a value psycopg or the server refuses, say)
            self.abandon()
            self.result = Refused(exc)

    def wait(self) -> Result:
        """Wait for the server's answer (once; later calls return the same result)."""
        if self.result is None:
            try:
                self._pipeline.close()
                self.result = Applied(self.batch.plain_events, [])
            except Exception as exc:
                self.result = Refused(exc)
        return self.result

    def abandon(self) -> None:
        """Stop waiting for the batch (its outcome is read back from the stored positions)."""
        try:
            self._pipeline.close()
        except Exception as exc:
            log.debug("abandoned batch: %s", exc)
        if self.result is None:
            self.result = Refused(Outage("abandoned"))

    def __enter__(self) -> PipelinedBatch:
        self.send()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.wait()
        else:
            self.abandon()


def after_pipeline_refused(db: Database, error: Exception, reconnect_wait_s: float) -> None:
    """Get ready to apply a refused pipelined batch the careful way, or raise Outage.

    The connection is replaced: after an error in a pipeline, psycopg can believe a statement prepared whose
    PREPARE the server skipped, and every later batch would fail on it ("prepared statement _pg3_N does not
    exist")."""
    conflict = is_conflict(error) and not db.gone
    if is_outage(error, db.conn) and not conflict:
        raise Outage(str(error)) from error
    if conflict:
        metrics.BATCH_CONFLICTS.inc()
    elif not isinstance(error, psycopg.errors.UniqueViolation):  # a replayed event: expected
        log.warning("batch failed (%s: %s); applying it again", type(error).__name__, str(error).strip())
    if not db.reopen(reconnect_wait_s):
        raise Outage("stopped while reconnecting to PostgreSQL")


class BulkApply:
    """The whole batch in one synchronous transaction, skipping events applied before."""

    def __init__(self, db: Database, offsets: OffsetStore, sink: DeadLetterSink, conflict_retries: int) -> None:
        self.db, self.offsets, self.sink, self.conflict_retries = db, offsets, sink, conflict_retries

    def apply(self, batch: Batch) -> Result:
        """Applied, or Refused; a clash with another projector's transaction is applied again at once (up to
        `conflict_retries` times): the other's rows are committed by then, and the merge updates them."""
        for retry in range(self.conflict_retries + 1):
            try:
                return self._commit(batch)
            except Outage:
                raise
            except Exception as exc:
                conn = self.db.conn
                if is_conflict(exc) and retry < self.conflict_retries and not (conn is None or conn.broken):
                    metrics.BATCH_CONFLICTS.inc()
                    log.info("batch clashed with another projector (%s); applying it again", exc.sqlstate)
                    continue
                if is_outage(exc, conn):
                    raise Outage(str(exc)) from exc
                log.warning("batch of %d event(s) failed (%s: %s); applying it event by event to find the "
                            "culprit", len(batch.events), type(exc).__name__, str(exc).strip())
                return Refused(exc)
        raise AssertionError("unreachable")

    def _commit(self, batch: Batch) -> Applied:
        conn = _connection(self.db)
        dead = list(batch.poison)
        with conn.transaction(), conn.cursor() as cur:
            events = batch.plain_events
            new_ids = record_new_event_ids(cur, events)
            fresh = [e for e in events if e.event_id in new_ids]
            apply_fold(cur, fold(fresh))
            self.offsets.store(cur, batch.positions)
            self.sink.write(cur, dead)
        return Applied(fresh, dead)


class IsolatingApply:
    """Every event in its own savepoint, so the ones the SQL refuses are found and dead-lettered."""

    def __init__(self, db: Database, offsets: OffsetStore, sink: DeadLetterSink) -> None:
        self.db, self.offsets, self.sink = db, offsets, sink

    def apply(self, batch: Batch) -> Result:
        try:
            conn = _connection(self.db)
            with conn.transaction(), conn.cursor() as cur:
                fresh, rejected = self._apply_each(conn, cur, batch.events)
                dead = [*batch.poison, *rejected]
                self.offsets.store(cur, batch.positions)
                self.sink.write(cur, dead)
            return Applied(fresh, dead)
        except Outage:
            raise
        except Exception as exc:
            if is_outage(exc, self.db.conn):
                raise Outage(str(exc)) from exc
            return Refused(exc)

    @staticmethod
    def _apply_each(conn: psycopg.Connection, cur: psycopg.Cursor,
                    events: list[tuple[object, Event]]) -> tuple[list[Event], list[DeadLetter]]:
        fresh: list[Event] = []
        dead: list[DeadLetter] = []
        for message, event in events:
            try:
                with conn.transaction():
                    if record_new_event_ids(cur, [event]):
                        apply_events(cur, [event])
                        fresh.append(event)
            except Exception as exc:
                if is_outage(exc, conn):
                    raise
                dead.append(DeadLetter(message, UNPROJECTABLE, f"{type(exc).__name__}: {str(exc).strip()}"))
        return fresh, dead


class Applier:
    """The ordered strategies: `submit` starts a batch on the fastest path that takes it; `settle` turns a
    sent batch into its result, applying it the careful ways if the server refused it."""

    def __init__(self, db: Database, offsets: OffsetStore, sink: DeadLetterSink, conflict_retries: int,
                 reconnect_wait_s: float) -> None:
        self.db, self.offsets = db, offsets
        self.reconnect_wait_s = reconnect_wait_s
        self.careful = (BulkApply(db, offsets, sink, conflict_retries), IsolatingApply(db, offsets, sink))

    def submit(self, batch: Batch) -> PipelinedBatch | Applied:
        """A sent PipelinedBatch (settle it later), or, for a batch with poison or one that did not fold,
        the result of applying it now."""
        if batch.poison or batch.fold is None:
            return self.apply_carefully(batch)
        flight = PipelinedBatch(self.db, self.offsets, batch)
        flight.send()
        return flight

    def settle(self, flight: PipelinedBatch) -> Applied:
        """The result of a sent batch; if the server refused it, the result of applying it the careful ways."""
        result = flight.wait()
        if isinstance(result, Applied):
            return result
        after_pipeline_refused(self.db, result.error, self.reconnect_wait_s)
        return self.apply_carefully(flight.batch)

    def apply_carefully(self, batch: Batch) -> Applied:
        """The first careful strategy's result that applies `batch` (the last refusal is raised)."""
        refused: Refused | None = None
        for strategy in self.careful:
            result = strategy.apply(batch)
            if isinstance(result, Applied):
                return result
            refused = result
        assert refused is not None
        raise refused.error
