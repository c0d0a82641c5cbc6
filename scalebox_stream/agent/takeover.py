"""HOST-BOUND tasks of a host that went down, taken over by the module's agents on live hosts.

A task bound to a host (`to_host`) waits on that host's task topic for an agent of that host. With the module's
`on_host_down: reroute`, each agent of the module also reads the topic of every host seen down (see
`policy.takeover`) in the module's consumer group: the group's positions and the agents' transactions keep each
task's success single, and tasks that were running on the dead host are run again as with any lost agent. Once
an agent of that host is live again, the others leave its topic to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from scalebox_stream.kafka.presence import PRESENCE_TTL_S
from scalebox_stream.kafka.topics import task_topic
from scalebox_stream.policy.takeover import Sighting, hosts_down
from scalebox_stream.spec.model import ModuleSpec

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0


def reroutes(module: ModuleSpec) -> bool:
    """Whether the module's agents take over the topics of hosts seen down."""
    return module.on_host_down == "reroute" and (module.task_dist_mode == "HOST-BOUND" or module.pod_id is not None)


class HostTakeover:
    """(Poll thread) Keeps the agent's subscription at its own topics plus those of the module's hosts seen down."""

    def __init__(self, app: str, module: ModuleSpec, host: str, rebalance: Any, board: Callable[[], dict[str, Any]],
                 clock: Callable[[], float] = time.time, down_after_s: float = PRESENCE_TTL_S) -> None:
        """`rebalance`: the agent's (its `topics` and `subscribe`); `board`: the latest presence record of every
        agent (`kafka.presence.HostDirectory.board`)."""
        self.app, self.module, self.host = app, module, host
        self.rebalance, self.board, self.clock, self.down_after_s = rebalance, board, clock, down_after_s
        self.own = list(rebalance.topics)
        self.taken: frozenset[str] = frozenset()
        self._checked = -CHECK_EVERY_S
        self.enabled = reroutes(module)

    def check(self) -> None:
        """Subscribe again if the hosts seen down changed since the last look (at most every CHECK_EVERY_S)."""
        now = self.clock()
        if not self.enabled or now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        sightings = [Sighting(p.host, p.state, p.at_s) for p in self.board().values()
                     if p.app == self.app and p.module == self.module.name]
        down = hosts_down(sightings, self.host, now, PRESENCE_TTL_S, self.down_after_s)
        if down == self.taken:
            return
        if down - self.taken:
            log.warning("host(s) %s seen down: taking over their %s tasks", ", ".join(sorted(down - self.taken)),
                        self.module.name)
        if self.taken - down:
            log.info("host(s) %s up again: leaving their tasks to them", ", ".join(sorted(self.taken - down)))
        self.taken = down
        self.rebalance.topics = self.own + [task_topic(self.app, self.module.name, host=h) for h in sorted(down)]
        self.rebalance.subscribe()
