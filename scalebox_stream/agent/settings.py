"""The agent's timing and sizing settings: one frozen object, defaults for production, filled in one place."""

from __future__ import annotations

from dataclasses import dataclass

from scalebox_stream.kafka.presence import PRESENCE_SECONDS
from scalebox_stream.policy.membership import REJOIN_AFTER_S


@dataclass(frozen=True)
class AgentSettings:
    """How an agent paces itself (the pacing of its transactions is `policy.pacing`)."""

    heartbeat_s: float = 30.0
    """How often an AgentLifecycle heartbeat goes to the events topic."""
    presence_s: float = PRESENCE_SECONDS
    """How often the agent renews its presence record (see `kafka.presence`)."""
    revoke_drain_s: float = 10.0
    """How long a rebalance waits for the running tasks of revoked partitions to finish and be committed."""
    committed_timeout_s: float = 30.0
    """How long one request for the committed positions of assigned partitions may take."""
    buffer_min: int = 64
    """Tasks fetched ahead: each poll takes what brings the buffer to max(buffer_min, 8 per slot); a full buffer
    is polled only now and then (one task at most); fetching pauses at 4 times that and resumes back at it.
    Pausing is for slow tasks only: librdkafka fetches a resumed partition again only after up to a second.
    Buffered tasks are not committed, so a crash loses none of them."""
    max_delayed: int = 1000
    """Tasks waiting for their time (retry delays, admission re-checks) beyond which fetching pauses."""
    max_lost_attempts: int = 3
    """A task whose attempts are lost this many times (it may be killing its agents) fails."""
    switch_interval_s: float = 0.0005
    """The interpreter's thread switch interval in an agent (Python's default, 5 ms, is longer than a short
    task: a slot whose task ended would wait that long for the interpreter lock)."""
    transaction_timeout_s: float = 10.0
    """How long one transactional call may take (a stuck one is abandoned: see `kafka.transactions`)."""
    retry_pause_s: float = 0.5
    """How long the poll loop waits after a failed transaction before it tries again."""
    rejoin_after_s: float = REJOIN_AFTER_S
    """How long the broker must have refused the agent's membership before it rejoins (see `policy.membership`)."""

    def buffer_target(self, slots: int) -> int:
        """How many tasks the agent keeps fetched ahead for `slots` slots."""
        return max(self.buffer_min, 8 * slots)
