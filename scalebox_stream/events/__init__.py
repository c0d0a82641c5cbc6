"""Event envelope, Avro schemas and the single-object codec."""

from scalebox_stream.events.codec import DecodeError, EventCodec
from scalebox_stream.events.envelope import Event, child_task_id, new_task_id, now_us

__all__ = ["DecodeError", "Event", "EventCodec", "child_task_id", "new_task_id", "now_us"]
