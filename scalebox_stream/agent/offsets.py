"""Out-of-order completion tracking for one partition: commit the contiguous watermark only.

Tasks of one partition finish in any order when several slots serve it. The committable offset is the
lowest offset not yet finished; offsets finished beyond it travel in the commit metadata, so that after a
rebalance or a crash the next owner skips them instead of running them (and emitting outputs) again.
"""

from __future__ import annotations

METADATA_PREFIX = "sbx1:"
MAX_METADATA_CHARS = 3000


class PartitionTracker:
    """Offsets started and finished in one partition since its assignment."""

    def __init__(self, start: int, already_done: set[int] | None = None) -> None:
        self.watermark = start
        self._in_flight: set[int] = set()
        self._done: set[int] = {o for o in (already_done or set()) if o >= start}
        self._advance()

    def is_done(self, offset: int) -> bool:
        """True if this offset ran to completion before (it must be skipped)."""
        return offset < self.watermark or offset in self._done

    def start(self, offset: int) -> None:
        """A task at `offset` was handed to a slot."""
        self._in_flight.add(offset)

    def finish(self, offset: int) -> None:
        """The task at `offset` finished (its events and outputs are produced)."""
        self._in_flight.discard(offset)
        if offset >= self.watermark:
            self._done.add(offset)
        self._advance()

    def skip(self, offset: int) -> None:
        """An offset that needs no run (done before, or a poison message already dead-lettered)."""
        self.finish(offset)

    @property
    def in_flight(self) -> int:
        """Number of offsets handed to slots and not yet finished."""
        return len(self._in_flight)

    def _advance(self) -> None:
        while self.watermark in self._done:
            self._done.discard(self.watermark)
            self.watermark += 1

    def metadata(self) -> str:
        """Finished offsets beyond the watermark, as deltas, to store with the committed offset."""
        if not self._done:
            return ""
        deltas = ",".join(str(o - self.watermark) for o in sorted(self._done))
        text = METADATA_PREFIX + deltas
        return text if len(text) <= MAX_METADATA_CHARS else ""


def parse_metadata(committed: int, metadata: str | None) -> set[int]:
    """Finished offsets beyond `committed` recorded in commit metadata (unknown formats give none)."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return set()
    try:
        return {committed + int(d) for d in metadata[len(METADATA_PREFIX) :].split(",") if d}
    except ValueError:
        return set()
