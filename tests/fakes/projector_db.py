"""An in-memory stand-in for the projector's PostgreSQL edge: a connection whose statements are recorded and
whose few effects the projector relies on are modelled (event ids, positions, dead letters, staged rows,
transactions, savepoints and pipelines). The SQL itself is tested against the real server (integration)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus

Rule = Callable[[str, object], Exception | None]


@dataclass
class State:
    """What the fake database holds."""

    applied: set[str] = field(default_factory=set)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dead_letters: list[tuple] = field(default_factory=list)
    merged_tasks: set[str] = field(default_factory=set)
    staged: dict[str, list[tuple]] = field(default_factory=dict)


class FakeServer:
    """One database that fake connections share; `refuse` rules make statements fail."""

    def __init__(self) -> None:
        self.state = State()
        self.rules: list[Rule] = []
        self.statements: list[str] = []
        self.connections: list[FakeConnection] = []
        self.down = False

    def connect(self, dsn: str = "", **kwargs: object) -> FakeConnection:
        """Stands in for `psycopg.connect`."""
        if self.down:
            raise psycopg.OperationalError("connection refused")
        conn = FakeConnection(self)
        self.connections.append(conn)
        return conn

    def refuse(self, rule: Rule) -> None:
        self.rules.append(rule)

    def refuse_task(self, task_id: str) -> None:
        """Staging a row keyed by `task_id` fails, as a value the uuid column refuses does."""
        def rule(sql: str, row: object) -> Exception | None:
            if sql.startswith("COPY sbx_stage_") and isinstance(row, tuple) and row and row[0] == task_id:
                return errors.InvalidTextRepresentation(f"invalid input syntax for type uuid: {task_id!r}")
            return None
        self.refuse(rule)

    def crash(self) -> None:
        """Every connection breaks; new ones are refused until `self.down` is cleared."""
        self.down = True
        for conn in self.connections:
            conn.broken = True

    def offsets_of(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.state.offsets.items() if t == topic}


class _Info:
    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn

    @property
    def transaction_status(self) -> TransactionStatus:
        if self._conn.failed is not None:
            return TransactionStatus.INERROR
        return TransactionStatus.INTRANS if self._conn.snapshots else TransactionStatus.IDLE


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.rows: list[tuple] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)

    def execute(self, sql: str, params: object = None) -> FakeCursor:
        self.rows = self.conn.run(" ".join(sql.split()), params)
        return self

    def executemany(self, sql: str, params_seq: list) -> None:
        for params in params_seq:
            self.execute(sql, params)

    def fetchall(self) -> list[tuple]:
        return self.rows

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    @contextmanager
    def copy(self, sql: str) -> Iterator[_Copy]:
        writer = _Copy(self.conn, sql)
        yield writer
        self.conn.run(sql, writer.rows)


class _Copy:
    def __init__(self, conn: FakeConnection, sql: str) -> None:
        self.conn, self.sql, self.rows = conn, sql, []

    def write_row(self, row: tuple) -> None:
        self.rows.append(tuple(row))


class FakeConnection:
    """Models autocommit mode: `BEGIN`/`COMMIT` statements and `transaction()` blocks (nested: savepoints)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False
        self.broken = False
        self.prepare_threshold: int | None = 5
        self.info = _Info(self)
        self.snapshots: list[State] = []
        self.failed: Exception | None = None  # the transaction is aborted (statements refused until it ends)
        self.in_pipeline = False
        self.deferred: Exception | None = None  # a pipeline's first error, raised when it syncs

    # ----- psycopg API ----------------------------------------------------------------------------

    def execute(self, sql: str, params: object = None) -> FakeCursor:
        return FakeCursor(self).execute(sql, params)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        if self.snapshots and not self.closed:  # the server rolls back what the connection left open
            self.server.state = self.snapshots[0]
            self.snapshots.clear()
        self.closed = True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._check()
        self.snapshots.append(copy.deepcopy(self.server.state))
        try:
            yield
        except BaseException:
            self.server.state = self.snapshots.pop()
            self.failed = None
            raise
        snapshot = self.snapshots.pop()
        if self.failed is not None:  # an error the block swallowed: the transaction cannot commit
            self.server.state, error, self.failed = snapshot, self.failed, None
            raise error
        if not self.snapshots:
            self.server.state.staged.clear()  # ON COMMIT DELETE ROWS

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        self.in_pipeline, self.deferred = True, None
        try:
            yield
        finally:
            self.in_pipeline = False
        if self.deferred is not None:
            error, self.deferred = self.deferred, None
            raise error

    # ----- the model -----------------------------------------------------------------------------

    def _check(self) -> None:
        if self.closed or self.broken:
            raise psycopg.OperationalError("the connection is lost")

    def run(self, sql: str, params: object) -> list[tuple]:
        self._check()
        self.server.statements.append(sql)
        if sql == "ROLLBACK":
            if self.snapshots:
                self.server.state = self.snapshots.pop()
            self.failed = None
            return []
        if self.in_pipeline and self.deferred is not None:
            return []  # the server skips what follows an error in a pipeline
        if self.failed is not None:
            return self._fail(errors.InFailedSqlTransaction("current transaction is aborted"))
        for rule in self.server.rules:
            for row in params if sql.startswith("COPY") else [params]:  # type: ignore[union-attr]
                error = rule(sql, row)
                if error is not None:
                    return self._fail(error)
        try:
            return self._effect(sql, params)
        except psycopg.Error as error:
            return self._fail(error)

    def _fail(self, error: Exception) -> list[tuple]:
        if self.server.down:
            self.broken = True
        if self.in_pipeline:
            self.deferred = error
            if self.snapshots:  # the transaction is lost with the error
                self.server.state = self.snapshots.pop()
            return []
        if self.snapshots:
            self.failed = error
        raise error

    def _effect(self, sql: str, params: object) -> list[tuple]:
        state = self.server.state
        if sql == "BEGIN":
            self.snapshots.append(copy.deepcopy(state))
        elif sql == "COMMIT":
            if self.snapshots:
                self.snapshots.pop()
        elif sql.startswith("SELECT partition, next_offset FROM projector_offsets"):
            topic, partitions = params  # type: ignore[misc]
            return [(p, o) for (t, p), o in state.offsets.items() if t == topic and p in partitions]
        elif sql.startswith("INSERT INTO projector_offsets"):
            topic, partitions, offsets = params  # type: ignore[misc]
            for p, o in zip(partitions, offsets, strict=True):
                state.offsets[(topic, p)] = o
        elif sql.startswith("INSERT INTO applied_events") and "unnest" in sql:
            new = [i for i in params[0] if i not in state.applied]  # type: ignore[index]
            state.applied.update(new)
            return [(i,) for i in new]
        elif sql.startswith("INSERT INTO applied_events"):  # from the staged ids, expecting every one fresh
            ids = [row[0] for row in state.staged.get("sbx_stage_events", [])]
            if any(i in state.applied for i in ids):
                raise errors.UniqueViolation("duplicate key value violates unique constraint")
            state.applied.update(ids)
        elif sql.startswith("COPY "):
            table = sql.split()[1]
            state.staged.setdefault(table, []).extend(params)  # type: ignore[arg-type]
        elif sql.startswith("DELETE FROM sbx_stage_"):
            state.staged.pop(sql.split()[2], None)
        elif sql.startswith("WITH d AS ( SELECT * FROM sbx_stage_tasks"):
            state.merged_tasks.update(row[0] for row in state.staged.get("sbx_stage_tasks", []))
        elif sql.startswith("INSERT INTO dead_letters"):
            state.dead_letters.append(tuple(params))  # type: ignore[arg-type]
        elif sql.startswith("SELECT version FROM schema_migrations"):
            return []
        if sql == "COMMIT" or (not self.snapshots and sql != "BEGIN"):
            state.staged.clear()  # ON COMMIT DELETE ROWS
        return []
