"""Turning the lines of sink-tasks.txt into child tasks: target module, topic and host placement."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.sink import SinkMessage
from scalebox_stream.events import Event, EventStamp, child_task_id
from scalebox_stream.kafka.presence import HostDirectory
from scalebox_stream.kafka.topics import HOST_TOPIC_PARTITIONS, task_topic
from scalebox_stream.policy.routing import missing_host_action, route
from scalebox_stream.spec.model import AppSpec

HOST_POLL_SECONDS = 1.0


class NoSinkError(ValueError):
    """An output line names no module and the emitting module has no default destination."""


@dataclass
class Children:
    """Child tasks to publish, and those that cannot be placed (to be recorded as failed)."""

    placed: list[Event] = field(default_factory=list)
    unplaceable: list[tuple[Event, str]] = field(default_factory=list)

    @property
    def all(self) -> list[Event]:
        """Every child, placed or not, in emission order of their lists."""
        return self.placed + [e for e, _ in self.unplaceable]


class OutputRouter:
    """Builds the children of one attempt; waits (in the slot thread) for hosts with no agent yet."""

    def __init__(self, spec: AppSpec, stamp: EventStamp, identity: AgentIdentity,
                 directory: HostDirectory | None) -> None:
        self.spec = spec
        self.stamp = stamp
        self.identity = identity
        self.module = spec.modules[identity.module]
        self.directory = directory

    def children(self, parent: Event, messages: list[SinkMessage]) -> Children:
        """TaskCreated events for the messages; raises NoSinkError if one has nowhere to go."""
        default = self.spec.sinks_of(self.module.name)
        result = Children()
        decided: dict[tuple[str, str], str] = {}
        for position, message in enumerate(messages):
            target = message.module or (default[0] if default else None)
            if target is None:
                raise NoSinkError(f"output {position + 1} has no module: {self.module.name} has no "
                                  "sink_modules and the app has no main_router")
            headers = {**message.headers, "from_module": self.module.name, "from_host": self.identity.host,
                       "from_ip": self.identity.ip}
            placement = route(self.spec.modules[target], self.module, headers, self.identity.host)
            host, problem = placement.host, None
            if host is not None:
                headers["to_host"] = host
                key = (target, host)
                if key not in decided:
                    decided[key] = self._host_decision(target, host)
                if decided[key] == "reroute":
                    host = None
                elif decided[key] == "fail":
                    problem = (f"no agent of module {target} serves host {host} (waited "
                               f"{self.spec.modules[target].host_wait_seconds:g}s)")
            child = self.stamp.task_created(child_task_id(parent.task_id, position), target, message.body, headers,
                                            task_topic(self.spec.name, target, host), parent_task_id=parent.task_id)
            if problem:
                result.unplaceable.append((child, problem))
            else:
                result.placed.append(child)
        return result

    def _host_decision(self, module: str, host: str) -> str:
        """'ok' once an agent of `module` serves `host`; else 'fail' or 'reroute' after the wait."""
        if self.directory is None:
            return "ok"
        self.directory.ensure_topic(task_topic(self.spec.name, module, host), HOST_TOPIC_PARTITIONS)
        spec = self.spec.modules[module]
        began = time.monotonic()
        while True:
            if self.directory.serves(self.spec.name, module, host):
                return "ok"
            action = missing_host_action(time.monotonic() - began, spec.host_wait_seconds, spec.on_missing_host)
            if action != "wait":
                return action
            time.sleep(HOST_POLL_SECONDS)
