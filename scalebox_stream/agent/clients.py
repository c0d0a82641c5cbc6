"""The Kafka clients an agent uses, made by factories: the real ones here, in-memory fakes in unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.lifespan import AppEndWatch
from scalebox_stream.agent.settings import AgentSettings
from scalebox_stream.kafka.acls import agent_transactional_id
from scalebox_stream.kafka.backlog import BacklogMonitor, BacklogWatcher
from scalebox_stream.kafka.config import admin_config, consumer_config
from scalebox_stream.kafka.control import CommandListener
from scalebox_stream.kafka.presence import HostDirectory
from scalebox_stream.kafka.topics import (
    HOST_TOPIC_PARTITIONS,
    PRESENCE_TOPIC,
    ensure_app_topics,
    ensure_topics,
    module_group,
)
from scalebox_stream.kafka.transactions import TransactionalPublisher
from scalebox_stream.spec.model import AppSpec
from scalebox_stream.state.intask import StateToolHandler


@dataclass(frozen=True)
class AgentClients:
    """Factories of everything an agent talks to Kafka with."""

    consumer: Callable[[], Any]
    """A new consumer of the module's group (the agent subscribes it; a rejoin asks for another)."""
    publisher: Callable[[threading.Event], Any]
    """The transactional publisher (`kafka.transactions.TransactionalPublisher`); the event ends its retries."""
    commands: Callable[[], Any]
    """A reader of the module's commands (`kafka.control.CommandListener`)."""
    downstream: Callable[[dict[str, int]], Any]
    """A watcher of the backlog bounds of the modules this one feeds (`kafka.backlog.BacklogWatcher`)."""
    backlog: Callable[[], Any]
    """A reader of module backlogs for the scrape (`kafka.backlog.BacklogMonitor`)."""
    directory: Callable[[], Any]
    """The directory of live hosts (`kafka.presence.HostDirectory`)."""
    prepare_topics: Callable[[str], None]
    """Make sure the app's topics and the host's own task topic exist."""
    state_tools: Callable[[], Any] | None = None
    """The handler of the in-task tools' shared-state requests (`state.intask.StateToolHandler`); None: none."""
    app_end: Callable[[], Any] | None = None
    """A watch of the app's result (`agent.lifespan.AppEndWatch`): the agent stops once it is set; None: none."""


def kafka_clients(bootstrap: str, spec: AppSpec, identity: AgentIdentity, settings: AgentSettings,
                  consumer_overrides: dict[str, Any] | None = None) -> AgentClients:
    """The real clients, all on `bootstrap`."""
    group = module_group(spec.name, identity.module)

    def consumer() -> Consumer:
        return Consumer(consumer_config(
            bootstrap, group,
            **{"client.id": identity.agent_id, "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
               "topic.metadata.refresh.interval.ms": 5000, "enable.partition.eof": True,
               **(consumer_overrides or {})}))

    def publisher(stop: threading.Event) -> TransactionalPublisher:
        return TransactionalPublisher(bootstrap, agent_transactional_id(spec.name, identity.agent_id),
                                      timeout_s=settings.transaction_timeout_s, stop=stop)

    def prepare_topics(host_topic: str) -> None:
        admin = AdminClient(admin_config(bootstrap))
        # The app's topics too: on another cluster than the app's home, nobody else may have made them yet, and
        # MirrorMaker 2 keeps partitions only into topics with as many of them.
        ensure_app_topics(admin, spec.name, list(spec.modules))
        ensure_topics(admin, {host_topic: HOST_TOPIC_PARTITIONS, PRESENCE_TOPIC: 1})

    return AgentClients(
        consumer=consumer, publisher=publisher,
        commands=lambda: CommandListener(bootstrap, spec.name, identity.module),
        downstream=lambda bounds: BacklogWatcher(bootstrap, spec.name, bounds),
        backlog=lambda: BacklogMonitor(bootstrap), directory=lambda: HostDirectory(bootstrap),
        prepare_topics=prepare_topics, state_tools=lambda: StateToolHandler(bootstrap),
        app_end=lambda: AppEndWatch(bootstrap, spec.name))
