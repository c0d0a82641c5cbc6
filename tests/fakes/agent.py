"""The agent's parts wired to the in-memory Kafka fake (`fakes.kafka`), and tasks to feed them (unit tests only)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fakes.kafka import FakeBroker

from scalebox_stream.agent.checkpoint import Checkpoint, Done
from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.agent.rebalance import Rebalance
from scalebox_stream.agent.settings import AgentSettings
from scalebox_stream.agent.task_runner import OutMessage, TaskMessage
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.transactions import TransactionalPublisher

CODEC = EventCodec()
APP, MODULE = "app", "m"
TOPIC = f"sbx.tasks.{APP}.{MODULE}"
P0, P1 = (TOPIC, 0), (TOPIC, 1)


def created(attempt: int = 1, not_before: int | None = None, body: str = "x") -> Event:
    """A TaskCreated event."""
    return Event("TaskCreated", APP, {"body": body, "headers": {}, "parent_task_id": None, "not_before": not_before,
                                      "topic": TOPIC}, module=MODULE, task_id=str(uuid.uuid4()), attempt=attempt)


def task(offset: int, source: tuple[str, int] = P0, assignment: int = 1, **kw: object) -> TaskMessage:
    """A task as consumed from `source` at `offset`."""
    return TaskMessage(created(**kw), source[0], source[1], offset, assignment=assignment)  # type: ignore[arg-type]


def done(t: TaskMessage, payload: bytes | None = None, **kw: object) -> Done:
    """The report of an attempt of `t`, with one record."""
    record = OutMessage("sbx.events", t.event.task_id, payload or f"finished {t.offset}".encode())
    return Done(t.source, t.offset, t.assignment, [record], **kw)  # type: ignore[arg-type]


@dataclass
class Timer:
    """Records the transactions the commit unit counts (stands in for `AgentTelemetry`)."""

    results: list[bool] = field(default_factory=list)

    def transaction(self, seconds: float, committed: bool) -> None:
        self.results.append(committed)


@dataclass
class Parts:
    """Dispatcher, commit unit and rebalance handling over one fake broker."""

    broker: FakeBroker
    dispatcher: Dispatcher
    checkpoint: Checkpoint
    rebalance: Rebalance
    stop: threading.Event
    timer: Timer
    hold: list[Callable[[], bool]]
    """hold[0](): whether starts are held (the agent's stop, suspension, backpressure)."""

    @property
    def consumer(self):  # noqa: ANN201 - a FakeConsumer
        return self.rebalance.consumer

    def take(self, t: TaskMessage) -> TaskMessage:
        """Receive `t` (its tracker starts it) and hand it to a slot: the task as the slot got it."""
        self.checkpoint.trackers[t.source].start(t.offset)
        self.dispatcher.add(t)
        pick = self.dispatcher.next_task()
        assert pick is not None
        return pick[0]


def parts(slots: int = 3, broker: FakeBroker | None = None, **settings: object) -> Parts:
    """Wire the parts as the agent does, with settings for tests (no pauses)."""
    broker = broker or FakeBroker()
    stop, timer, hold = threading.Event(), Timer(), [lambda: False]
    config = AgentSettings(**{"retry_pause_s": 0.0, "revoke_drain_s": 2.0, **settings})  # type: ignore[arg-type]
    dispatcher = Dispatcher(slots, held=lambda: hold[0]())
    publisher = TransactionalPublisher("fake:9092", "sbx-agent-test", producer_factory=broker.producer, stop=stop,
                                       timeout_s=1.0, watchdog_grace_s=0.5, init_retry_s=0.001)
    box: dict[str, Rebalance] = {}
    checkpoint = Checkpoint(publisher, lambda: box["r"].consumer.consumer_group_metadata(), dispatcher, timer,
                            config.retry_pause_s)
    rebalance = box["r"] = Rebalance(broker.consumer, [TOPIC], checkpoint, dispatcher, config, stop, "agent-test")
    checkpoint.on_membership = rebalance.note_membership
    rebalance.subscribe()
    return Parts(broker, dispatcher, checkpoint, rebalance, stop, timer, hold)
