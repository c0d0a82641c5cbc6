"""Which hosts' HOST-BOUND tasks a module's agent takes over: those of hosts seen down.

Tasks already on a host's task topic wait for an agent of that host. With the module's `on_host_down:
reroute`, the agents on live hosts take over the topic of a host whose agents of the module are all gone: no
live presence record on that host for `down_after_s` (a killed host stops renewing its records; an agent that
stopped said so and is gone as well). They read it in the module's consumer group, so each task still
succeeds once. When an agent of that host is live again, they give its topic back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sighting:
    """The latest presence record of one agent of the module: its host, state and time (epoch seconds)."""

    host: str
    state: str
    at_s: float


def hosts_down(sightings: Iterable[Sighting], own_host: str, now_s: float, live_ttl_s: float,
               down_after_s: float) -> frozenset[str]:
    """The hosts (other than `own_host`) that had an agent of the module and have none live: their latest
    record is older than `down_after_s` (at least `live_ttl_s`: a record that young is a live agent unless it
    said it stopped)."""
    live: set[str] = set()
    latest: dict[str, float] = {}
    for s in sightings:
        if s.state != "stopped" and now_s - s.at_s <= live_ttl_s:
            live.add(s.host)
        latest[s.host] = max(latest.get(s.host, s.at_s), s.at_s)
    after = max(down_after_s, live_ttl_s)
    return frozenset(host for host, at in latest.items()
                     if host != own_host and host not in live and now_s - at > after)
