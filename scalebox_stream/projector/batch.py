"""One batch of records: decoded, folded, with the positions after it (pure CPU work, no I/O)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Message

from scalebox_stream.events import DecodeError, Event, EventCodec
from scalebox_stream.projector.fold import Fold, fold

log = logging.getLogger(__name__)

UNDECODABLE, UNPROJECTABLE = "undecodable", "unprojectable"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class DeadLetter:
    """A record the projector cannot take, and why (`kind` is UNDECODABLE or UNPROJECTABLE)."""

    record: Message
    kind: str
    reason: str


@dataclass
class Batch:
    """Records consumed together, decoded and folded, with the positions after them."""

    records: list[Message]
    started: float
    positions: dict[int, int] = field(default_factory=dict)
    events: list[tuple[Message, Event]] = field(default_factory=list)
    poison: list[DeadLetter] = field(default_factory=list)
    fold: Fold | None = None
    """None when the fold refused an event (the batch is then applied event by event)."""

    @property
    def plain_events(self) -> list[Event]:
        return [e for _, e in self.events]


def build_batch(records: list[Message], codec: EventCodec, started: float | None = None) -> Batch:
    """Decode and fold `records` (records without an error only)."""
    batch = Batch(records, started=time.monotonic() if started is None else started)
    positions = batch.positions
    for message in records:
        partition = message.partition()
        positions[partition] = max(positions.get(partition, 0), message.offset() + 1)
    batch.events, batch.poison = decode(records, codec)
    try:
        batch.fold = fold(batch.plain_events)
    except Exception as exc:  # an event the fold refuses: found by the one-by-one path
        log.warning("cannot fold batch (%s)", exc)
    return batch


def decode(records: list[Message], codec: EventCodec) -> tuple[list[tuple[Message, Event]], list[DeadLetter]]:
    """Decoded events (first of each event id, ids normalised) and the records that are not events."""
    events: dict[str, tuple[Message, Event]] = {}
    poison: list[DeadLetter] = []
    for message in records:
        try:
            event = codec.decode(message.value())
        except DecodeError as exc:
            poison.append(DeadLetter(message, UNDECODABLE, str(exc)))
            continue
        try:
            if not _CANONICAL_UUID.fullmatch(event.event_id):
                event.event_id = str(uuid.UUID(event.event_id))
        except ValueError:
            poison.append(DeadLetter(message, UNPROJECTABLE, f"event_id {event.event_id!r} is not a UUID"))
            continue
        events.setdefault(event.event_id, (message, event))
    return list(events.values()), poison
