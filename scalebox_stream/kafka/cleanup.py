"""Removing what a finished app leaves on the broker: its task topics and its agents' consumer groups.

The app's records stay: its events in the event log and its rows in the perspective. Every app and every host
an app is bound to adds topics; a broker holding thousands of partitions starts slowly (it loads each one) and
answers metadata requests slowly, so finished apps should not keep them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.topics import module_group, settle, task_topic

IDLE_GROUP_STATES = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})
UNKNOWN = "UNKNOWN_TOPIC_OR_PART"
GROUP_GONE = "GROUP_ID_NOT_FOUND"


def _module_pattern(prefix: str, suffix: str = "") -> re.Pattern[str]:
    """`prefix` followed by one module name (no dots) and `suffix`."""
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9][A-Za-z0-9_-]*" + suffix)


def app_topics(app: str, names: Iterable[str]) -> list[str]:
    """The task topics of `app` among `names`: one per module, and one per module and bound host."""
    pattern = _module_pattern(task_topic(app, ""), r"(\.host\.[A-Za-z0-9._-]+)?")
    return sorted(name for name in names if pattern.fullmatch(name))


def app_groups(app: str, group_ids: Iterable[str]) -> list[str]:
    """The consumer groups of `app`'s agents among `group_ids`: one per module."""
    pattern = _module_pattern(module_group(app, ""))
    return sorted(group for group in group_ids if pattern.fullmatch(group))


@dataclass(frozen=True)
class AppLeftovers:
    """What an app keeps on the broker, and which of its groups still have members (agents running)."""

    topics: list[str]
    groups: list[str]
    busy_groups: list[str]


def find_leftovers(admin: AdminClient, app: str, timeout_s: float = 30.0) -> AppLeftovers:
    """List the app's task topics and its agents' consumer groups."""
    topics = app_topics(app, admin.list_topics(timeout=timeout_s).topics)
    listing = admin.list_consumer_groups(request_timeout=timeout_s).result()
    states = {g.group_id: g.state for g in listing.valid}
    groups = app_groups(app, states)
    busy = [g for g in groups if states[g] not in IDLE_GROUP_STATES]
    return AppLeftovers(topics=topics, groups=groups, busy_groups=busy)


def delete_topics(admin: AdminClient, names: list[str], timeout_s: float = 60.0) -> None:
    """Delete topics and wait until the broker has; topics already gone are fine."""
    if names:
        settle(admin.delete_topics(names, operation_timeout=timeout_s), "delete topic", tolerated=UNKNOWN)


def delete_groups(admin: AdminClient, group_ids: list[str], timeout_s: float = 30.0) -> None:
    """Delete consumer groups (their committed positions); groups already gone are fine."""
    if group_ids:
        settle(admin.delete_consumer_groups(group_ids, request_timeout=timeout_s), "delete consumer group",
               tolerated=GROUP_GONE)


def remove(admin: AdminClient, leftovers: AppLeftovers) -> None:
    """Delete the app's idle consumer groups (a group with members cannot be deleted), then its topics."""
    delete_groups(admin, [g for g in leftovers.groups if g not in leftovers.busy_groups])
    delete_topics(admin, leftovers.topics)
