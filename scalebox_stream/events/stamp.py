"""Who produced an event: the envelope fields one producer stamps on every event it makes."""

import socket
from dataclasses import dataclass
from typing import Protocol

from scalebox_stream.events.envelope import Event
from scalebox_stream.events.payloads import Payload, TaskCreated


class AgentLike(Protocol):
    """What an agent's identity (`agent.identity.AgentIdentity`) offers to stamp its events."""

    @property
    def app(self) -> str: ...
    @property
    def module(self) -> str: ...
    @property
    def cluster(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def agent_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class EventStamp:
    """Makes the events of one producer (an agent, the CLI): app, module, cluster, host and producer."""

    app: str
    module: str = ""
    cluster: str = ""
    host: str = ""
    producer: str = ""

    @classmethod
    def for_agent(cls, identity: AgentLike) -> "EventStamp":
        """The stamp of an agent: its app, module, cluster and host; the agent id as producer."""
        return cls(identity.app, identity.module, identity.cluster, identity.host, identity.agent_id)

    @classmethod
    def for_cli(cls, app: str, producer: str = "cli") -> "EventStamp":
        """The stamp of a command run on this host (no module, no cluster)."""
        return cls(app, host=socket.gethostname(), producer=producer)

    def event(self, payload: Payload, task_id: str = "", attempt: int = 0, module: str | None = None) -> Event:
        """An event carrying `payload`, about task `task_id`'s attempt `attempt` of `module` (default: ours)."""
        return Event(payload.NAME, self.app, payload, self.module if module is None else module, task_id, attempt,
                     self.cluster, self.host, self.producer)

    def task_created(self, task_id: str, module: str, body: str, headers: dict[str, str], topic: str,
                     attempt: int = 1, parent_task_id: str | None = None, not_before: int | None = None,
                     task_created_at: int = 0) -> Event:
        """The TaskCreated of attempt `attempt` of a task of `module`, sent to `topic` (the one place that
        builds one: a CLI's task, a parent's child and a retry)."""
        return self.event(TaskCreated(body=body, headers=headers, parent_task_id=parent_task_id,
                                      not_before=not_before, topic=topic, task_created_at=task_created_at),
                          task_id, attempt, module)
