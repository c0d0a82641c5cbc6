"""The projector's one PostgreSQL connection: opened on request (never in a constructor), replaced when broken."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from scalebox_stream.projector.apply import prepare_session
from scalebox_stream.projector.settings import ProjectorSettings

log = logging.getLogger(__name__)

Connect = Callable[..., psycopg.Connection]


class Database:
    """Connects (retrying while PostgreSQL is unreachable) and prepares the session for the apply paths."""

    def __init__(self, dsn: str, settings: ProjectorSettings, stop: threading.Event,
                 connect: Connect = psycopg.connect) -> None:
        self.dsn = dsn
        self.settings = settings
        self._stop = stop
        self._connect = connect
        self.conn: psycopg.Connection | None = None

    @property
    def gone(self) -> bool:
        """True if there is no usable connection (never opened, closed, or broken)."""
        return self.conn is None or self.conn.closed or self.conn.broken

    def open(self, wait_s: float) -> bool:
        """Connect, retrying while the database is unreachable (up to `wait_s`, forever if negative).

        Returns False if a stop was requested meanwhile; raises the last error once `wait_s` has passed."""
        deadline = time.monotonic() + wait_s
        delay = self.settings.reconnect_delay_s
        while True:
            try:
                conn = self._connect(self.dsn, autocommit=True, connect_timeout=self.settings.connect_timeout_s)
                prepare_session(conn)
                self.conn = conn
                return True
            except psycopg.OperationalError as exc:
                if wait_s >= 0 and time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL unreachable (%s); retrying in %.1fs", str(exc).strip(), delay)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.reconnect_max_delay_s)

    def reopen(self, wait_s: float) -> bool:
        """Replace the connection (see `open`)."""
        self.close()
        return self.open(wait_s)

    def rollback(self) -> None:
        """End a transaction the server or the client aborted (one left open refuses every statement)."""
        if self.conn is not None and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
