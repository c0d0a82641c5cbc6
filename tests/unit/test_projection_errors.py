"""Telling a database outage from an event the SQL refuses."""

from __future__ import annotations

import psycopg
from psycopg import errors

from scalebox_stream.projector.errors import is_conflict, is_outage


def test_outages_and_content_errors():
    assert is_outage(errors.AdminShutdown())
    assert is_outage(errors.DeadlockDetected())
    assert is_outage(errors.QueryCanceled())
    assert is_outage(psycopg.OperationalError("connection lost"))  # no SQLSTATE: client side
    assert is_outage(psycopg.InterfaceError("closed"))
    assert not is_outage(errors.InvalidTextRepresentation())
    assert not is_outage(errors.NotNullViolation())
    assert not is_outage(errors.ProgramLimitExceeded())  # an oversized value: the batch's fault
    assert not is_outage(ValueError("bad payload"))


def test_clashes_with_another_projector_are_conflicts():
    assert is_conflict(errors.DeadlockDetected())
    assert is_conflict(errors.SerializationFailure())
    clash = psycopg.Error("2 row(s) inserted concurrently by another projector; retry")
    clash.sqlstate = "SBX02"  # as raised by projector_expect_placed
    assert is_conflict(clash)
    assert not is_conflict(errors.AdminShutdown())
    assert not is_conflict(errors.UniqueViolation())
    assert not is_conflict(ValueError("bad payload"))
