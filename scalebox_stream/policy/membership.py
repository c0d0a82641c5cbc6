"""When an agent must rejoin its consumer group with a fresh consumer (pure).

librdkafka can lose track of its membership after a broker restart that lands in the middle of a rebalance:
the broker expires the member, yet the consumer neither heartbeats nor joins again, and every transaction
that commits the agent's positions fails with UNKNOWN_MEMBER_ID, for good (seen in the chaos test). Those
failures are the evidence: the broker itself says the agent is not a member. A consumer that noticed would
rejoin within seconds (a revoke drains for up to 10 s, a dead member expires after 10 s), so only an absence
that lasts `REJOIN_AFTER_S` counts. A commit that succeeds, a new assignment, or a failure that says nothing
about membership (the broker down) ends the count.

(Asking the broker for the group's members instead, with an admin client, crashed agents: librdkafka's admin
coordinator requests assert on a reference count when the broker goes away under them.)
"""

from __future__ import annotations

from scalebox_stream.policy.pacing import pending_since

REJOIN_AFTER_S = 60.0
"""How long the broker must have refused the agent's membership before it rejoins."""


def membership_evidence(committed: bool, refused_as_non_member: bool = False) -> bool | None:
    """What a transaction says about membership: True when it committed positions, False when the broker
    refused them as from a non-member (`refused_as_non_member`, see `kafka.errors`), None when it failed for
    another reason."""
    if committed:
        return True
    return False if refused_as_non_member else None


def absent_since(present: bool | None, since: float | None, now: float) -> float | None:
    """When the continuous absence began: `present` is the latest evidence (None: nothing learnt)."""
    return pending_since(present is False, since, now)


def must_rejoin(since: float | None, now: float, after_s: float = REJOIN_AFTER_S) -> bool:
    """Rejoin now? True once the absence that began at `since` has lasted `after_s`."""
    return since is not None and now - since >= after_s
