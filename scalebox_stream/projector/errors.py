"""Telling a database outage (wait, reconnect, rewind) from an event the SQL cannot take (dead-letter it)."""

from __future__ import annotations

import psycopg

# SQLSTATE classes that say nothing about the batch's content: connection loss, server shutting down or out
# of resources, serialization failures and deadlocks, an operator cancelling the query, I/O errors.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
# ... and a row inserted concurrently by another projector of the group (apply.CONCURRENT_INSERT_SQLSTATE).
_TRANSIENT_STATES = ("SBX02",)


def is_outage(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    """True if `exc` means "retry later", False if the batch's content caused it."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # client-side failure without a server answer: the connection is gone
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES
