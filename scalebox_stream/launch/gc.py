"""`scalebox app gc`: delete the task topics and consumer groups of apps finished a retention period ago.

Run by `scalebox run` when it ends and by `scalebox local up`; an app whose agents still run is skipped (its
groups have members) and collected by a later run. The app's records stay: events in the event log, rows in the
projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka import cleanup
from scalebox_stream.kafka.config import admin_config
from scalebox_stream.policy.app_gc import Lifetime, due_apps


@dataclass(frozen=True)
class Collected:
    """What one app had on the broker and whether it was deleted (not while its agents run)."""

    app: str
    topics: list[str]
    groups: list[str]
    skipped: bool


def app_lifetimes(pg: str) -> dict[str, Lifetime]:
    """Every projected app with its last deployment and the time it finished (None: not finished)."""
    with psycopg.connect(pg) as conn:
        try:
            rows = conn.execute("SELECT app, deployed_at, finished_at FROM apps").fetchall()
        except psycopg.errors.UndefinedTable:  # no projector has run here yet: no app either
            return {}
    return {app: (deployed, finished) for app, deployed, finished in rows}


def leftovers_of(admin: AdminClient, apps: list[str], timeout_s: float = 30.0) -> dict[str, cleanup.AppLeftovers]:
    """The task topics and consumer groups each of `apps` still has (apps with none are left out); the
    broker is asked once for topics and once for groups, however many apps."""
    if not apps:
        return {}
    topics = list(admin.list_topics(timeout=timeout_s).topics)
    listing = admin.list_consumer_groups(request_timeout=timeout_s).result()
    states = {g.group_id: g.state for g in listing.valid}
    found = {}
    for app in apps:
        groups = cleanup.app_groups(app, states)
        left = cleanup.AppLeftovers(topics=cleanup.app_topics(app, topics), groups=groups,
                                    busy_groups=[g for g in groups if states[g] not in cleanup.IDLE_GROUP_STATES])
        if left.topics or left.groups:
            found[app] = left
    return found


def collect(kafka: str, pg: str, retention_s: float, dry_run: bool = False, now: datetime | None = None,
            also: tuple[str, ...] = ()) -> list[Collected]:
    """Delete the leftovers of the apps finished `retention_s` ago or more (and of `also`, apps the caller
    knows have finished); apps whose agents still run are skipped."""
    apps = sorted(set(due_apps(app_lifetimes(pg), now or datetime.now(UTC), retention_s)) | set(also))
    admin = AdminClient(admin_config(kafka))
    done = []
    for app, left in leftovers_of(admin, apps).items():
        skipped = bool(left.busy_groups)
        if not skipped and not dry_run:
            cleanup.remove(admin, left)
        done.append(Collected(app, left.topics, left.groups, skipped))
    return done


def collect_after(kafka: str, pg: str, retention_s: float, finished: tuple[str, ...] = ()) -> str | None:
    """`collect` for a command that has other work to report (`scalebox run`, `local up`): the apps it
    collected in one line, or a warning if it could not; None if there was nothing to collect. With
    retention 0, `finished` (apps the caller just finished) go at once."""
    try:
        done = collect(kafka, pg, retention_s, also=finished if retention_s == 0 else ())
    except (RuntimeError, psycopg.Error, OSError) as exc:
        return f"warning: finished apps' topics not collected: {exc}"
    gone = [c for c in done if not c.skipped]
    if not gone:
        return None
    topics = sum(len(c.topics) for c in gone)
    return f"deleted {topics} task topics of {len(gone)} finished app(s) (SCALEBOX_APP_RETENTION_S={retention_s:g})"
