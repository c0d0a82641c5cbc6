"""Out-of-order completion tracking for one partition, and the lease record kept in commit metadata.

Tasks of one partition finish in any order when several slots serve it. The committable offset is the
lowest offset not yet finished. The commit metadata (committed with every agent transaction) carries
what lies beyond it: offsets already finished — so the next owner skips them instead of running them
and emitting their outputs again — and offsets running at that moment with their attempt numbers — so
that, if this agent dies, the next owner knows those attempts were lost and runs the next attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

METADATA_PREFIX = "sbx2:"
MAX_METADATA_CHARS = 3500


@dataclass
class PartitionState:
    """What a previous owner recorded: offsets finished beyond the watermark, attempts still running."""

    done: set[int] = field(default_factory=set)
    running: dict[int, int] = field(default_factory=dict)


class PartitionTracker:
    """Offsets started and finished in one partition since its assignment."""

    def __init__(self, start: int, previous: PartitionState | None = None, assignment: int = 0) -> None:
        previous = previous or PartitionState()
        self.assignment = assignment  # which of its agent's assignments handed the partition over
        self.committed: tuple[int, str] | None = None
        """The position (watermark, metadata) this agent last committed for it (None: none yet)."""
        self.watermark = start
        self._next_expected = start
        self._in_flight: set[int] = set()
        self._running: dict[int, int] = {}
        self._done: set[int] = {o for o in previous.done if o >= start}
        self._lost: dict[int, int] = {o: a for o, a in previous.running.items() if o >= start}
        self._advance()

    def copy(self) -> PartitionTracker:
        """An independent copy (a transaction works on copies until it has committed)."""
        twin = PartitionTracker.__new__(PartitionTracker)
        twin.assignment, twin.committed = self.assignment, self.committed
        twin.watermark, twin._next_expected = self.watermark, self._next_expected
        twin._in_flight, twin._running = set(self._in_flight), dict(self._running)
        twin._done, twin._lost = set(self._done), dict(self._lost)
        return twin

    def position(self) -> tuple[int, str]:
        """What a commit of this partition would store: the watermark and the metadata."""
        return self.watermark, self.metadata()

    def is_done(self, offset: int) -> bool:
        """True if this offset ran to completion before (it must be skipped)."""
        return offset < self.watermark or offset in self._done

    def lost_attempt(self, offset: int) -> int | None:
        """The attempt a previous owner was running at this offset when it went away, if any."""
        return self._lost.get(offset)

    def start(self, offset: int) -> None:
        """The task at `offset` was received; it holds the watermark back until it finishes.

        Offsets skipped on the way (transaction markers, aborted records: never delivered) count as done.
        """
        if offset > self._next_expected:
            self._done.update(o for o in range(self._next_expected, offset) if o not in self._in_flight)
        self._next_expected = max(self._next_expected, offset + 1)
        self._in_flight.add(offset)
        self._lost.pop(offset, None)
        self._advance()

    def reached_end(self, end: int) -> bool:
        """The consumer reached the partition's end at `end`: offsets not delivered before it are done.

        Returns True if the watermark moved (a commit would tell the group something new).
        """
        before = self.watermark
        if end > self._next_expected:
            self._done.update(o for o in range(self._next_expected, end) if o not in self._in_flight)
            self._next_expected = end
        self._advance()
        return self.watermark != before

    def mark_running(self, offset: int, attempt: int) -> None:
        """`attempt` of the task at `offset` started running: if this agent dies, it was lost."""
        if offset in self._in_flight:
            self._running[offset] = attempt

    def finish(self, offset: int) -> None:
        """The task at `offset` finished (its events and outputs are produced)."""
        self._in_flight.discard(offset)
        self._running.pop(offset, None)
        self._lost.pop(offset, None)
        if offset >= self.watermark:
            self._done.add(offset)
        self._advance()

    @property
    def in_flight(self) -> int:
        """Number of offsets received and not yet finished."""
        return len(self._in_flight)

    def _advance(self) -> None:
        while self.watermark in self._done:
            self._done.discard(self.watermark)
            self.watermark += 1

    def metadata(self) -> str:
        """`sbx2:<done deltas>;<running delta@attempt>` relative to the watermark ('' when nothing to say)."""
        running = {**self._lost, **self._running}
        if not self._done and not running:
            return ""
        done = ",".join(str(o - self.watermark) for o in sorted(self._done))
        live = ",".join(f"{o - self.watermark}@{a}" for o, a in sorted(running.items()))
        text = f"{METADATA_PREFIX}{done};{live}"
        return text if len(text) <= MAX_METADATA_CHARS else f"{METADATA_PREFIX};{live}"[:MAX_METADATA_CHARS]


def parse_metadata(committed: int, metadata: str | None) -> PartitionState:
    """The state recorded in commit metadata (unknown or damaged formats give an empty state)."""
    state = PartitionState()
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return state
    done, _, live = metadata[len(METADATA_PREFIX):].partition(";")
    try:
        state.done = {committed + int(d) for d in done.split(",") if d}
        for item in filter(None, live.split(",")):
            delta, _, attempt = item.partition("@")
            state.running[committed + int(delta)] = int(attempt)
    except ValueError:
        return PartitionState()
    return state
