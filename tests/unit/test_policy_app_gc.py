"""Which finished apps' task topics are due for deletion."""

from datetime import UTC, datetime, timedelta

from scalebox_stream.policy.app_gc import due_apps

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
DEPLOYED = NOW - timedelta(days=1)


def test_apps_finished_a_retention_period_ago_are_due_and_running_apps_never():
    lifetimes = {"old": (DEPLOYED, NOW - timedelta(hours=2)), "edge": (DEPLOYED, NOW - timedelta(hours=1)),
                 "recent": (DEPLOYED, NOW - timedelta(minutes=59)), "running": (DEPLOYED, None)}
    assert due_apps(lifetimes, NOW, 3600) == ["edge", "old"]


def test_retention_zero_takes_every_finished_app_at_once():
    lifetimes = {"b": (DEPLOYED, NOW), "a": (None, NOW - timedelta(seconds=1)), "running": (DEPLOYED, None)}
    assert due_apps(lifetimes, NOW, 0) == ["a", "b"]
    assert due_apps({}, NOW, 0) == []


def test_an_app_deployed_again_after_it_finished_runs_anew_and_is_not_due():
    again = (NOW - timedelta(minutes=1), NOW - timedelta(hours=5))
    assert due_apps({"again": again}, NOW, 0) == []
