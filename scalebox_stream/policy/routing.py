"""Where an emitted task goes: the module's shared topic, or the topic of one host (pure).

A task for a HOST-BOUND module goes to the host named by its `to_host` header, by default the sending
host; so does a hand-off between two modules that share a `pod_id`. Every other task goes to the module's
shared topic, which every agent of the module reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RoutedModule(Protocol):
    """The module settings routing reads."""

    @property
    def task_dist_mode(self) -> str: ...

    @property
    def pod_id(self) -> str | None: ...


@dataclass(frozen=True)
class Route:
    """The host a task is bound to (None: any agent of the module)."""

    host: str | None
    reason: str = ""


def route(target: RoutedModule, source: RoutedModule | None, headers: dict[str, str], sending_host: str) -> Route:
    """The route of a task emitted by a `source` module (None: from outside) to `target`."""
    same_pod = source is not None and target.pod_id is not None and target.pod_id == source.pod_id
    if target.task_dist_mode == "HOST-BOUND" or same_pod:
        host = headers.get("to_host") or (sending_host if source is not None else None)
        if host:
            return Route(host, "to_host header" if headers.get("to_host") else
                         ("same pod" if same_pod else "HOST-BOUND: the sending host"))
    elif headers.get("to_host") and target.task_dist_mode != "DEFAULT":
        return Route(headers["to_host"], "to_host header")
    return Route(None)


def missing_host_action(waited_s: float, wait_limit_s: float, policy: str) -> str:
    """What to do with a task bound to a host no agent serves: 'wait', 'fail' or 'reroute'."""
    if waited_s < wait_limit_s:
        return "wait"
    return "reroute" if policy == "reroute" else "fail"
