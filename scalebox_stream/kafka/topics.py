"""Topic names and topic creation."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
    TopicMetadata,
)

log = logging.getLogger(__name__)

EVENTS_TOPIC = "sbx.events"
DEAD_LETTER_TOPIC = "sbx.dlq"
APPS_TOPIC = "sbx.apps"
CONTROL_TOPIC = "sbx.control"
PRESENCE_TOPIC = "sbx.presence"
"""Each agent's latest AgentLifecycle record, keyed by agent id (see `presence`): compacted, and records older
than a day go too (a killed agent never writes its last one; a running agent renews its own every few seconds)."""
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
"""No time- or size-based deletion: the events topic is the truth the projection is rebuilt from (`replay`), so
it keeps every event unless an operator deletes an app's (`app clean`)."""
TOPIC_CONFIGS = {APPS_TOPIC: {"cleanup.policy": "compact"}, EVENTS_TOPIC: KEEP_FOREVER,
                 PRESENCE_TOPIC: {"cleanup.policy": "compact,delete", "retention.ms": str(24 * 3600 * 1000),
                                  "segment.ms": str(3600 * 1000)}}
"""Topics created with a configuration of their own (the others get the broker's defaults)."""
TASK_TOPIC_PARTITIONS = 4
EVENTS_TOPIC_PARTITIONS = 6
"""Six: one, two, three or six projector processes share them evenly (an existing topic keeps its count)."""


HOST_TOPIC_PARTITIONS = 2


def task_topic(app: str, module: str, host: str | None = None) -> str:
    """The topic holding the tasks of one module (those bound to one host, with `host`)."""
    base = f"sbx.tasks.{app}.{module}"
    return base if host is None else f"{base}.host.{topic_safe(host)}"


def topic_safe(name: str) -> str:
    """A host name usable inside a topic name (letters, digits, '.', '_', '-')."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def module_group(app: str, module: str) -> str:
    """The consumer group shared by every agent of one module."""
    return f"sbx.agents.{app}.{module}"


def ensure_topics(admin: AdminClient, topics: dict[str, int], timeout_s: float = 30.0,
                  configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics that do not exist yet (name -> partitions; their configuration from `configs`, else
    TOPIC_CONFIGS); existing ones are left alone. Returns once every one of them, new or not, has a leader for
    each partition."""
    existing = admin.list_topics(timeout=timeout_s).topics
    configs = {**TOPIC_CONFIGS, **(configs or {})}
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=1,
                 config=configs.get(name, {}))
        for name, partitions in topics.items() if name not in existing
    ]
    if wanted:
        settle(admin.create_topics(wanted, operation_timeout=timeout_s), "create topic",
               tolerated="TOPIC_ALREADY_EXISTS")
    _await_leaders(admin, set(topics), timeout_s)


def settle(futures: dict[str, Future], action: str, tolerated: str) -> None:
    """Wait for an admin request's per-name futures; an error naming `tolerated` (the state wanted is there
    already) is fine, any other raises naming the action and the name."""
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if tolerated not in str(exc):
                raise RuntimeError(f"cannot {action} {name}: {exc}") from exc


def _await_leaders(admin: AdminClient, names: set[str], timeout_s: float) -> None:
    """Wait until every partition of the topics answers for its offsets. A broker lists a new topic's
    partitions, and then their leader, a moment before that leader serves them: a client asking for offsets
    in that moment gets NOT_LEADER_FOR_PARTITION. Raises naming the topics still not served."""
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = _unserved(admin, names, timeout_s)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"topics not served by a partition leader after {timeout_s:.0f} s: "
                               + ", ".join(waiting))
        time.sleep(0.1)


def _unserved(admin: AdminClient, names: set[str], timeout_s: float) -> list[str]:
    """The topics among `names` with a partition that has no leader yet or whose leader cannot give its
    end offset."""
    topics = admin.list_topics(timeout=timeout_s).topics
    waiting = {n for n in names if not _ready(topics.get(n))}
    probes = {TopicPartition(n, p): OffsetSpec.latest() for n in names - waiting for p in topics[n].partitions}
    for tp, future in (admin.list_offsets(probes, request_timeout=timeout_s).items() if probes else ()):
        try:
            future.result()
        except KafkaException:
            waiting.add(tp.topic)
    return sorted(waiting)


def _ready(topic: TopicMetadata | None) -> bool:
    """Whether a topic's metadata lists partitions, each with a leader and no error."""
    return (topic is not None and topic.error is None and bool(topic.partitions)
            and all(p.leader >= 0 and p.error is None for p in topic.partitions.values()))


SHARED_TOPICS = {EVENTS_TOPIC: EVENTS_TOPIC_PARTITIONS, DEAD_LETTER_TOPIC: 1, APPS_TOPIC: 1, CONTROL_TOPIC: 1,
                 PRESENCE_TOPIC: 1}
"""The topics every app shares (name -> partitions); the apps and presence topics are compacted (TOPIC_CONFIGS)."""


def ensure_shared_topics(admin: AdminClient) -> None:
    """Create the topics every app shares (a projector started before any app reads and fills them); an events
    topic made before it was kept forever (it took the broker's retention) is set to keep its events."""
    ensure_topics(admin, SHARED_TOPICS)
    try:
        ensure_topic_config(admin, EVENTS_TOPIC, KEEP_FOREVER)
    except KafkaException as exc:  # a client allowed to write events but not to configure topics
        log.warning("cannot make %s keep its events (%s): its retention is left as it is", EVENTS_TOPIC,
                    exc.args[0].str())


def ensure_topic_config(admin: AdminClient, topic: str, wanted: dict[str, str], timeout_s: float = 30.0) -> bool:
    """Set the entries of `wanted` an existing topic does not have yet (the others stay as they are); True if
    it changed any."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    current = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout_s)
    changes = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in wanted.items() if name not in current or current[name].value != value]
    if not changes:
        return False
    altered = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=changes)
    for future in admin.incremental_alter_configs([altered], request_timeout=timeout_s).values():
        future.result(timeout_s)
    return True


def ensure_app_topics(admin: AdminClient, app: str, modules: list[str]) -> None:
    """Create the shared topics and one task topic per module of an app."""
    topics = {**SHARED_TOPICS, **{task_topic(app, m): TASK_TOPIC_PARTITIONS for m in modules}}
    ensure_topics(admin, topics)


STATE_PREFIX = "sbx.state"
STATE_PARTITIONS = 6
"""Commands and changelog (the same count: a command's partition is its item's changelog partition); one, two,
three or six owner processes share them evenly."""
STATE_REPLY_PARTITIONS = 12
"""Replies: each client reads one partition and skips the other clients' replies there."""
STATE_REPLY_RETENTION_MS = 3600 * 1000


def state_topics(prefix: str = STATE_PREFIX, partitions: int = STATE_PARTITIONS,
                 reply_partitions: int = STATE_REPLY_PARTITIONS) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """The shared-state topics (name -> partitions) and their configurations: the changelog is compacted (the
    latest value of each item is the state), replies are kept an hour and commands a week (the broker's default)."""
    topics = {f"{prefix}.commands": partitions, f"{prefix}.changelog": partitions,
              f"{prefix}.replies": reply_partitions}
    configs = {f"{prefix}.changelog": {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
               f"{prefix}.replies": {"cleanup.policy": "delete", "retention.ms": str(STATE_REPLY_RETENTION_MS)}}
    return topics, configs


def ensure_state_topics(admin: AdminClient, prefix: str = STATE_PREFIX, partitions: int = STATE_PARTITIONS,
                        reply_partitions: int = STATE_REPLY_PARTITIONS) -> None:
    """Create the shared-state topics (and the events topic their owners publish to)."""
    topics, configs = state_topics(prefix, partitions, reply_partitions)
    ensure_topics(admin, {**SHARED_TOPICS, **topics}, configs=configs)
