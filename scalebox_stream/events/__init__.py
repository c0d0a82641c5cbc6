"""Event envelope, typed payloads, the producer's stamp and the Avro single-object codec."""

from scalebox_stream.events.codec import DecodeError, EventCodec
from scalebox_stream.events.envelope import Event, child_task_id, new_task_id, now_us
from scalebox_stream.events.payloads import (
    AgentLifecycle,
    AppDeployed,
    AppFinished,
    ModuleState,
    Payload,
    StateChanged,
    TaskAccepted,
    TaskCreated,
    TaskFailed,
    TaskFinished,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
    UserTimestamp,
)
from scalebox_stream.events.stamp import EventStamp

__all__ = [
    "AgentLifecycle", "AppDeployed", "AppFinished", "DecodeError", "Event", "EventCodec", "EventStamp", "ModuleState",
    "Payload", "StateChanged", "TaskAccepted", "TaskCreated", "TaskFailed", "TaskFinished", "TaskRetryScheduled",
    "TaskStarted", "TaskSucceeded", "UserTimestamp", "child_task_id", "new_task_id", "now_us",
]
