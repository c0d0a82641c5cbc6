"""Which topics MirrorMaker 2 must copy between the clusters of an app (pure).

Topic names stay the same on every cluster (MirrorMaker 2's IdentityReplicationPolicy), so agents, producers
and the projector need no cluster-specific names. No topic flows both ways between two clusters, so nothing
loops back:

- a module's task topics (`sbx.tasks.<app>.<module>` and its host topics) flow from every other cluster to the
  cluster that runs the module: whoever sends it a task, on any cluster, writes to the local copy;
- the events and dead letters flow from every other cluster to the app's home cluster, where they are projected;
- the app registry and the module commands (`sbx.apps`, `sbx.control`) flow from home to every other cluster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from scalebox_stream.kafka.topics import APPS_TOPIC, CONTROL_TOPIC, DEAD_LETTER_TOPIC, EVENTS_TOPIC, task_topic
from scalebox_stream.spec.model import AppSpec


@dataclass(frozen=True)
class Flow:
    """Topics (regular expressions) copied from one cluster to another."""

    source: str
    target: str
    topics: tuple[str, ...]


def clusters(spec: AppSpec) -> list[str]:
    """The app's clusters: its home first, then the others in module order."""
    names = [spec.cluster] + [spec.cluster_of(m) for m in spec.modules]
    return list(dict.fromkeys(names))


def module_topics(app: str, module: str) -> str:
    """A regular expression for a module's shared task topic and its host topics."""
    return re.escape(task_topic(app, module)) + r"(\.host\..+)?"


def flows(spec: AppSpec) -> list[Flow]:
    """The flows between every ordered pair of the app's clusters that has something to copy."""
    result = []
    for source in clusters(spec):
        for target in clusters(spec):
            if source == target:
                continue
            topics = [module_topics(spec.name, m) for m in spec.modules if spec.cluster_of(m) == target]
            if target == spec.cluster:
                topics += [re.escape(EVENTS_TOPIC), re.escape(DEAD_LETTER_TOPIC)]
            if source == spec.cluster:
                topics += [re.escape(APPS_TOPIC), re.escape(CONTROL_TOPIC)]
            if topics:
                result.append(Flow(source, target, tuple(topics)))
    return result


def merged(specs: Sequence[AppSpec]) -> list[Flow]:
    """The flows of several apps that share clusters, one per ordered pair (one MirrorMaker 2 deployment serves
    a set of clusters: its processes share their configuration). The apps must share their home cluster, or
    their events would flow both ways between two clusters."""
    homes = sorted({spec.cluster for spec in specs})
    if len(homes) > 1:
        raise ValueError(f"apps mirrored together must share their home cluster, not {', '.join(homes)}")
    topics: dict[tuple[str, str], dict[str, None]] = {}
    for spec in specs:
        for flow in flows(spec):
            topics.setdefault((flow.source, flow.target), {}).update(dict.fromkeys(flow.topics))
    return [Flow(source, target, tuple(names)) for (source, target), names in topics.items()]
