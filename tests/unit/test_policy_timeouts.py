"""The three clocks: per attempt (shortened by the deadline), overall deadline, queue wait."""

from __future__ import annotations

from types import SimpleNamespace

from scalebox_stream.policy.timeouts import attempt_timeout, deadline_at, queue_expired, retry_allowed_by_deadline
from scalebox_stream.spec import parse_app


def spec(per: float | None = None, deadline: float | None = None, queue: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(task_max_seconds=per, task_deadline_seconds=deadline, queue_timeout_seconds=queue)


def test_no_limits() -> None:
    assert attempt_timeout(spec(), 0, 1e9) is None
    assert deadline_at(spec(), 100) is None
    assert not queue_expired(spec(), 0, 1e9)
    assert retry_allowed_by_deadline(spec(), 0, 1e9, 1e9)


def test_per_attempt_only() -> None:
    assert attempt_timeout(spec(per=60), 0, 5000) == 60


def test_deadline_shortens_the_attempt() -> None:
    module = spec(per=60, deadline=100)
    assert deadline_at(module, 1000) == 1100
    assert attempt_timeout(module, 1000, 1000) == 60      # plenty of time: the per-attempt limit
    assert attempt_timeout(module, 1000, 1070) == 30      # 30 s left before the deadline
    assert attempt_timeout(module, 1000, 1100) == 0       # exactly at the deadline
    assert attempt_timeout(module, 1000, 1150) == -50     # already past it
    assert attempt_timeout(spec(deadline=100), 1000, 1040) == 60


def test_queue_expiry() -> None:
    module = spec(queue=30)
    assert not queue_expired(module, 100, 100)
    assert not queue_expired(module, 100, 130)
    assert queue_expired(module, 100, 130.001)


def test_retry_after_the_deadline_is_not_scheduled() -> None:
    module = spec(deadline=100)
    assert retry_allowed_by_deadline(module, 0, 50, 49.9)
    assert not retry_allowed_by_deadline(module, 0, 50, 50)
    assert not retry_allowed_by_deadline(module, 0, 120, 0)


def test_works_with_a_module_spec(tmp_path) -> None:
    app = parse_app("name: a\nmodules:\n  m:\n    image: x\n    task_max_seconds: 10\n"
                    "    task_deadline_seconds: 25\n    queue_timeout_seconds: 5\n",
                    file="app.yaml", app_dir=tmp_path, source=tmp_path / "app.yaml")
    module = app.modules["m"]
    assert attempt_timeout(module, 0, 20) == 5 and queue_expired(module, 0, 6)
