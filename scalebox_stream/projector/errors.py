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


# Two projectors of one group touching the same rows: a deadlock, a serialization failure, or a row the other
# inserted first (apply.CONCURRENT_INSERT_SQLSTATE). The rows are there now: applying the batch again works.
_CONFLICT_STATES = frozenset({"40P01", "40001", "SBX02"})


def is_conflict(exc: BaseException) -> bool:
    """True if `exc` is a clash with another projector's concurrent transaction (retry the batch at once)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in _CONFLICT_STATES


class Outage(Exception):
    """PostgreSQL (or the dead-letter topic) failed for reasons unrelated to the batch: wait, reconnect, rewind."""
