"""When an agent must rejoin its consumer group with a fresh consumer (pure).

librdkafka can lose track of its membership after a broker restart that lands in the middle of a rebalance:
the broker expires the member, yet the consumer neither heartbeats nor joins again, and its transactions fail
with UNKNOWN_MEMBER_ID forever (seen in the chaos test). So the agent asks the broker, now and then, whether
its member id is in the group. Only an absence seen on every look for `REJOIN_AFTER_S` counts: a rebalance
takes seconds (a revoke drains for up to 10 s, a dead member expires after 10 s), and a look that could not
be made (the broker down) proves nothing, so it starts the count again.
"""

from __future__ import annotations

REJOIN_AFTER_S = 60.0
"""How long the broker must have failed to count the agent a member before it rejoins."""
CHECK_INTERVAL_S = 5.0
"""How often the agent looks."""


def absent_since(present: bool | None, since: float | None, now: float) -> float | None:
    """When the continuous absence began: `present` is what the last look saw (None: no answer)."""
    if present is False:
        return now if since is None else since
    return None


def must_rejoin(since: float | None, now: float, after_s: float = REJOIN_AFTER_S) -> bool:
    """Rejoin now? True once the absence that began at `since` has lasted `after_s`."""
    return since is not None and now - since >= after_s
