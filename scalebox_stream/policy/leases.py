"""Lost attempts and fencing: when an agent's lease has lapsed, and which events are stale.

An agent heartbeats every `heartbeat_interval_s`; after `misses` intervals without one, its running
attempts are considered lost (and may be rescheduled as attempt k+1). Once attempt k+1 exists, any
late event of attempt k (from an agent that was only slow, not dead) is ignored.
"""

from __future__ import annotations


def lease_expired(last_heartbeat_s: float, now_s: float, heartbeat_interval_s: float, misses: int = 3) -> bool:
    """True once more than `misses` heartbeat intervals have passed since the last heartbeat."""
    if heartbeat_interval_s <= 0 or misses < 1:
        raise ValueError("heartbeat_interval_s must be > 0 and misses >= 1")
    return now_s - last_heartbeat_s > heartbeat_interval_s * misses


def is_stale_attempt(event_attempt: int, current_attempt: int) -> bool:
    """True if an event of attempt `event_attempt` comes from an attempt superseded by `current_attempt`."""
    return event_attempt < current_attempt
