"""The projector's knobs and timing constants, in one frozen value (defaults are the production ones)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectorSettings:
    """How one projector process batches, waits and retries."""

    batch_size: int = 1000
    """Most records applied in one PostgreSQL transaction."""
    batch_wait_ms: int = 100
    """How long the broker lets events gather before it answers the projector's fetch (unless `gather_bytes`
    came first): the projection lags the log by up to this much more, and a busy pipeline is projected in
    fewer, larger transactions instead of waking PostgreSQL on every agent commit. 0: answer at once."""
    gather_bytes: int = 1 << 20
    """A fetch is answered as soon as this many bytes of events wait (a busy log does not wait)."""
    heartbeat_interval_ms: int = 250
    """How soon a member learns that the group is rebalancing (another projector process joined or left)."""
    poll_timeout_s: float = 0.2
    """How long one fetch waits for the next record when none is buffered."""
    conflict_retries: int = 5
    """Times a batch that clashed with another projector's transaction is applied again at once."""
    connect_timeout_s: int = 10
    """Timeout of one connection attempt to PostgreSQL."""
    start_wait_s: float = 60.0
    """How long `start` (and a reconnect after a refused pipelined batch) waits for PostgreSQL to answer."""
    reconnect_delay_s: float = 0.2
    """First pause between connection attempts; it doubles up to `reconnect_max_delay_s`."""
    reconnect_max_delay_s: float = 5.0
    outage_pause_s: float = 0.5
    """Pause after PostgreSQL failed, before reconnecting and rewinding."""
    dead_letter_flush_s: float = 30.0
    """How long the dead-letter topic may take to acknowledge, before the batch counts as not applied."""
    close_flush_s: float = 10.0
    """How long closing waits for dead letters still queued."""
    group_start_timeout_s: float = 120.0
    """How long the processes of a group (`group.run_projectors`) wait for each other to be ready."""
    prefetch_kbytes: int = 16384
    """Most KiB of records librdkafka fetches ahead of the batches (its `queued.max.messages.kbytes`, 64 MiB by
    default): the bound of the projector's memory besides its batch. A batch of 1000 events is about 250 KiB,
    so 16 MiB keeps several seconds of work at hand while the projector lags."""
    trim_interval_s: float = 5.0
    """How often, at most, the memory freed by the C allocator is handed back to the system while batches keep
    coming (`memory.FreeMemoryReturner`; once they stop, after a fifth of it); 0: never."""

    def consumer_overrides(self) -> dict[str, object]:
        """The consumer settings these knobs imply (partition EOF drives `until_caught_up`; eager `range`
        assignment lets a member that joins late get its partitions at the next heartbeat; the prefetch cap)."""
        gather = ({"fetch.wait.max.ms": self.batch_wait_ms, "fetch.min.bytes": self.gather_bytes}
                  if self.batch_wait_ms > 0 else {})
        return {"enable.partition.eof": True, "partition.assignment.strategy": "range",
                "heartbeat.interval.ms": self.heartbeat_interval_ms,
                "queued.max.messages.kbytes": self.prefetch_kbytes, **gather}
