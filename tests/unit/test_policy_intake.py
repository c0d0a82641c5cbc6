"""Task records from a topic are checked before they run: each fault is named."""

from __future__ import annotations

import dataclasses

import pytest

from scalebox_stream.policy.intake import (
    MAX_ATTEMPT,
    MAX_DELAY_US,
    TaskRecord,
    task_record_problem,
)
from scalebox_stream.policy.limits import MAX_BODY_BYTES

NOW = 1_800_000_000_000_000
GOOD = TaskRecord(app="primes", module="calc", task_id="0b6f1f6e-3c1e-4a5e-9a55-3f1c2d4b5a69", attempt=1,
                  body="1000", headers={"from_module": "router"})


def check(**changes: object) -> str | None:
    return task_record_problem(dataclasses.replace(GOOD, **changes), "primes", "calc", NOW)


def test_a_good_record_passes() -> None:
    assert check() is None
    assert check(attempt=MAX_ATTEMPT, not_before=NOW + MAX_DELAY_US, body="x" * MAX_BODY_BYTES) is None
    assert check(parent_task_id="9d2f1f6e-3c1e-4a5e-9a55-3f1c2d4b5a69", body="", headers={}) is None


@pytest.mark.parametrize(("changes", "fault"), [
    ({"task_id": "not-a-uuid"}, "task_id 'not-a-uuid' is not a UUID"),
    ({"task_id": "../../etc/passwd"}, "task_id '../../etc/passwd' is not a UUID"),
    ({"task_id": "0B6F1F6E-3C1E-4A5E-9A55-3F1C2D4B5A69"}, None),
    ({"task_id": "{0b6f1f6e-3c1e-4a5e-9a55-3f1c2d4b5a69}"}, "is not a UUID"),
    ({"parent_task_id": "x"}, "parent_task_id 'x' is not a UUID"),
    ({"attempt": 0}, "attempt 0 is outside 1..10000"),
    ({"attempt": -5}, "attempt -5 is outside 1..10000"),
    ({"attempt": MAX_ATTEMPT + 1}, "attempt 10001 is outside"),
    ({"not_before": 2**62}, "not_before 4611686018427387904 is not a time within a year"),
    ({"not_before": -1}, "not_before -1 is not a time"),
    ({"body": "a\x00b"}, "the task body contains a NUL byte"),
    ({"body": "é" * MAX_BODY_BYTES}, "the task body is 131072 bytes, over the limit of 65536 bytes"),
    ({"headers": {"k": "v\x00"}}, "header 'k' contains a NUL byte"),
    ({"headers": {"../k": "v"}}, "bad header key '../k'"),
    ({"headers": {"": "v"}}, "a header key must be a non-empty string"),
    ({"headers": {"k": "v" * 20000}}, "the headers are 20008 bytes as JSON, over the limit of 16384 bytes"),
    ({"module": "other"}, "module 'other' is not this agent's module 'calc'"),
    ({"app": "other"}, "app 'other' is not this agent's app 'primes'"),
])
def test_each_fault_is_named(changes: dict, fault: str | None) -> None:
    problem = check(**changes)
    if fault is None:
        assert problem is None
    else:
        assert problem is not None and fault in problem


def test_text_that_is_not_utf8_is_named() -> None:
    assert "the task body is not valid UTF-8" in (check(body="\udcff") or "")
