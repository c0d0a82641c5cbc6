"""The agent: one consumer of a module's task topic, N slots, a poll loop that never blocks.

The poll thread owns the consumer (`rebalance`) and the transactions (`checkpoint`). It fetches tasks into a
small buffer (`dispatcher`, via `intake`); slots are worker threads that run one attempt at a time and, when one
ends, take the next buffered task themselves (`slots`), so a slot never waits for the poll thread's transaction.
Whatever a slot produces (lifecycle events, the attempt's report, child tasks) is handed to the commit unit,
which the poll thread publishes, together with the partition positions, in one Kafka transaction. The module's
error budget and commands are `control`; the timing settings are `settings.AgentSettings`; the Kafka clients
come from factories (`clients`), so tests can hand in fakes.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from scalebox_stream import metrics
from scalebox_stream.agent.admission import Admission
from scalebox_stream.agent.checkpoint import Checkpoint
from scalebox_stream.agent.clients import AgentClients, kafka_clients
from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.intake import Intake
from scalebox_stream.agent.lifespan import Lifespan
from scalebox_stream.agent.rebalance import Rebalance
from scalebox_stream.agent.settings import AgentSettings
from scalebox_stream.agent.slots import Slots
from scalebox_stream.agent.startup import slow_step
from scalebox_stream.agent.takeover import HostTakeover
from scalebox_stream.agent.task_runner import OutMessage, TaskRunner
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.events import AgentLifecycle, EventCodec
from scalebox_stream.executors import make_executor
from scalebox_stream.kafka.topics import EVENTS_TOPIC, PRESENCE_TOPIC, task_topic
from scalebox_stream.policy.budget import ErrorBudget
from scalebox_stream.policy.pacing import may_fetch
from scalebox_stream.spec.model import AppSpec
from scalebox_stream.state.gate import SemaphoreGate

log = logging.getLogger(__name__)

TRANSACTIONAL_HINT = ("the broker's transaction coordinator answers once it has loaded after a restart; is the broker "
                      "up?")
TOPICS_HINT = "a broker that just started elects the partitions' leaders first; is every broker up?"


@dataclass
class AgentOptions:
    """Tunables of one agent."""

    slots: int
    work_root: Path
    grace_seconds: float = 30.0
    keep_work_dirs: bool = False
    consumer_overrides: dict = field(default_factory=dict)
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (none when None)."""
    settings: AgentSettings = field(default_factory=AgentSettings)


def _freeze_heap() -> None:
    """Leave what the agent has made so far (modules, the spec, the clients: most of its objects) out of the
    garbage collector's full collections: rare (more than a thousand tasks apart), but each would walk all of it
    (10-30 ms) on whichever thread happened to allocate, delaying that thread's task or transaction."""
    gc.collect()
    gc.freeze()


class Agent:
    """Consumes one module's tasks and runs them in slots; see the module docstring."""

    def __init__(self, spec: AppSpec, identity: AgentIdentity, bootstrap: str, options: AgentOptions,
                 clients: AgentClients | None = None) -> None:
        self.spec, self.identity, self.options, self.settings = spec, identity, options, options.settings
        self.clients = clients or kafka_clients(bootstrap, spec, identity, self.settings, options.consumer_overrides)
        self.codec = EventCodec()
        self.module = module = spec.modules[identity.module]
        self.executor = make_executor(module.executor, container_mode=module.container_mode)
        self.directory = self.clients.directory()
        self.state_tools = self.clients.state_tools() if self.clients.state_tools is not None else None
        """Answers the tasks' semaphore, variable, global and app requests (its state client made on first use)."""
        self.runner = TaskRunner(spec, identity, self.executor, self.codec, options.work_root,
                                 options.keep_work_dirs, self.directory, tool_handler=self.state_tools)
        self.topics = [task_topic(spec.name, identity.module),
                       task_topic(spec.name, identity.module, host=identity.host)]
        self._stop = threading.Event()
        self._buffer_target = self.settings.buffer_target(options.slots)
        self._buffer_cap = 4 * self._buffer_target
        self._last_fetch = self._last_heartbeat = self._last_presence = 0.0
        self.telemetry = AgentTelemetry(identity)
        # Only modules of this cluster: another cluster's backlog is not measured here (its copy of the topic
        # holds tasks whose consumers commit on the other cluster).
        bounds = {m: spec.modules[m].max_backlog for m in spec.sinks_of(module.name)
                  if spec.modules[m].max_backlog and spec.cluster_of(m) == spec.cluster_of(module.name)}
        self.downstream = self.clients.downstream(bounds)
        self.dispatcher = Dispatcher(options.slots, held=self._held, on_start=self.downstream.note_started)
        with slow_step("starting the transactional producer", TRANSACTIONAL_HINT):
            publisher = self.clients.publisher(self._stop)
        self.checkpoint = Checkpoint(publisher, self._group_metadata, self.dispatcher, self.telemetry,
                                     self.settings.retry_pause_s)
        self.rebalance = Rebalance(self.clients.consumer, self.topics, self.checkpoint, self.dispatcher,
                                   self.settings, self._stop, identity.agent_id)
        self.checkpoint.on_membership = self.rebalance.note_membership
        self.lifespan = Lifespan(spec, module.name, self._busy, self.clients.app_end)
        self.takeover = HostTakeover(spec.name, module, identity.host, self.rebalance,
                                     lambda: self.directory.board())
        budget = ErrorBudget.from_spec(module.error_budget) if module.error_budget else None
        self.control = ModuleControl(identity, budget, self.dispatcher.lock, self.checkpoint.put, self.runner.to_events,
                                     module.task_min_seconds)
        self.commands = self.clients.commands()
        locks = options.work_root.parent / "locks" / identity.host / f"{spec.name}.{module.name}"
        self.gate = None
        if module.wait_semaphore and self.state_tools is not None:
            self.gate = SemaphoreGate(bootstrap, self.state_tools.client, spec.name, module.wait_semaphore)
        self.admission = Admission(module, {"APP": spec.name, "MODULE_NAME": module.name, "HOST_NAME": identity.host,
                                            **module.environments}, locks,
                                   self.runner.check_in_runtime if self.runner.has_runtime_check else None,
                                   None if self.gate is None else lambda: self.gate.acquire(self._stop))
        self.slots = Slots(options.slots, self.dispatcher, self.runner, self.admission, self.checkpoint, self.control,
                           self.telemetry)
        self.intake = Intake(identity, self.codec, self.runner, self.checkpoint, self.dispatcher, self.telemetry,
                             self.settings.max_lost_attempts)
        self.telemetry.watch(options.slots, busy=lambda: self.dispatcher.in_flight,
                             buffered=lambda: self.dispatcher.buffered, suspended=lambda: float(self.control.suspended),
                             held=lambda: float(self._blocked_downstream()), backlog=self._own_backlog)
        self._backlog_monitor: Any = None  # made by the first scrape that asks
        self._backlog_lock = threading.Lock()  # the scrape thread against the close at stop

    @property
    def consumer(self) -> Any:
        """The group consumer (a new one after a rejoin)."""
        return self.rebalance.consumer

    @property
    def assignments(self) -> int:
        """How many assignments this agent has received."""
        return self.rebalance.assignments

    def request_stop(self, *_: object) -> None:
        """Stop taking tasks; in-flight ones get the grace period (signal-handler safe)."""
        self._stop.set()

    def run(self) -> None:
        """Run until a stop is requested, then drain and close."""
        sys.setswitchinterval(self.settings.switch_interval_s)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        with slow_step("making sure the app's topics exist and are served", TOPICS_HINT):
            self.clients.prepare_topics(self.topics[1])
        if self.options.metrics_port is not None:
            metrics.serve(self.options.metrics_port)
        self.rebalance.subscribe()
        self._lifecycle("started")
        log.info("agent %s serving %s with %d %s slot(s)", self.identity.agent_id, " and ".join(self.topics),
                 self.options.slots, self.executor.name)
        _freeze_heap()
        try:
            while not self._stop.is_set():
                self._step()
            self._drain()
        finally:
            self._close()

    def _step(self) -> None:
        """One turn of the poll loop: publish what finished, obey commands, admit work, poll."""
        if self.checkpoint.due():
            self.checkpoint.publish()
        self.control.obey(self.commands.poll())
        if self._membership_lost():
            self._rejoin()
        self.dispatcher.release_due(self.checkpoint.holds)
        self.slots.start_waiting()
        self.rebalance.pause_or_resume(self._fetching_held(), len(self.dispatcher.waiting), self._buffer_target,
                                       self._buffer_cap)
        for message in self._fetch():
            self.intake.on_message(message)
        self.slots.start_waiting()
        now = time.monotonic()
        if now - self._last_heartbeat > self.settings.heartbeat_s:
            self._lifecycle("heartbeat")
        elif now - self._last_presence > self.settings.presence_s:
            self._announce("heartbeat")
        self._mind_lifespan()

    def _mind_lifespan(self) -> None:
        """Stop by itself when the app is finished or the module's idle limit is up (`agent.lifespan`); take
        over the HOST-BOUND tasks of hosts seen down if the module says so (`agent.takeover`)."""
        if (why := self.lifespan.reason()) is not None:
            log.info("agent %s stopping by itself: %s", self.identity.agent_id, why)
            self._stop.set()
            return
        self.takeover.check()

    def _busy(self) -> bool:
        """A task running, buffered or waiting for its time."""
        return bool(self.dispatcher.in_flight or self.dispatcher.buffered)

    def _group_metadata(self) -> Any:
        return self.rebalance.consumer.consumer_group_metadata()

    def _membership_lost(self) -> bool:
        return self.rebalance.membership_lost()

    def _rejoin(self) -> None:
        self.rebalance.rejoin()

    def _held(self) -> bool:
        """No task may start: the agent is stopping, the module suspended, or a downstream module too full."""
        return self._stop.is_set() or self.control.suspended or self._blocked_downstream()

    def _fetching_held(self) -> bool:
        """Pause fetching: the module is suspended, held by backpressure, or too many tasks wait for their time."""
        return (self.control.suspended or self._blocked_downstream()
                or len(self.dispatcher.delayed) >= self.settings.max_delayed)

    def _blocked_downstream(self) -> bool:
        """Backpressure: a module this one feeds has more tasks waiting than its `max_backlog`."""
        return self.downstream.over_bound() is not None

    def _fetch(self) -> list[Any]:
        """What the consumer has fetched already, up to the buffer's target; else wait for one message, or, while
        every slot runs, for a finished task's report (a consumer's poll cannot be woken by one). A full
        buffer is left alone (the loop just waits), but for a poll now and then (see `pacing.may_fetch`).

        (`consume` with a count waits for the whole count or the timeout: it would hold back a lone task.)"""
        now = time.monotonic()
        room = self._buffer_target - len(self.dispatcher.waiting)
        if not may_fetch(room, now - self._last_fetch):
            self.checkpoint.wait(now, self.checkpoint.poll_wait(now))
            return []
        self._last_fetch = now
        consumer = self.rebalance.consumer
        messages = consumer.consume(max(1, room), 0)
        if messages:
            return messages
        wait = self.checkpoint.poll_wait(now)
        if not self.dispatcher.free_slots:  # a message could not start sooner; a finished task's report could
            self.checkpoint.wait(now, wait)
            return []
        message = consumer.poll(wait)
        return [] if message is None else [message]

    def _drain(self) -> None:
        """Graceful stop: let running tasks finish within the grace period, then hand the rest back."""
        consumer = self.rebalance.consumer
        consumer.pause(consumer.assignment())
        self.dispatcher.clear()
        deadline = time.monotonic() + self.options.grace_seconds
        while self.dispatcher.in_flight and time.monotonic() < deadline:
            self.rebalance.consumer.poll(0.1)
            self.checkpoint.publish()
        if self.dispatcher.in_flight:
            log.warning("%d task(s) still running after the %.0fs grace period: killed and handed back",
                        self.dispatcher.in_flight, self.options.grace_seconds)
            self.slots.abandoned = True
            self.executor.abort()
        self.checkpoint.publish()

    def _close(self) -> None:
        self.lifespan.close()
        self._lifecycle("stopped")
        self.checkpoint.publish()
        self.rebalance.consumer.close()
        self.commands.close()
        self.downstream.close()
        with self._backlog_lock:
            if self._backlog_monitor is not None:
                self._backlog_monitor.close()
        self.directory.close()
        self.slots.shutdown()
        self.executor.close()
        self.runner.close()
        if self.gate is not None:
            self.gate.close()
        if self.state_tools is not None:
            self.state_tools.close()
        if not self.dispatcher.in_flight:
            self.runner.remove_slot_work_dirs()
        log.info("agent %s stopped", self.identity.agent_id)

    def _lifecycle(self, state: str) -> None:
        """Record a lifecycle state on the events topic (and as this agent's presence)."""
        self._last_heartbeat = time.monotonic()
        self.checkpoint.put(OutMessage(EVENTS_TOPIC, self.identity.agent_id, self._announce(state)))

    def _announce(self, state: str) -> bytes:
        """Renew this agent's presence record (see `kafka.presence`); returns the encoded AgentLifecycle."""
        self._last_presence = time.monotonic()
        event = self.runner.stamp.event(AgentLifecycle(agent=self.identity.agent_id, state=state,
                                                       slots=self.options.slots, executor=self.executor.name,
                                                       pid=os.getpid()))
        value = self.codec.encode(event)
        self.checkpoint.put(OutMessage(PRESENCE_TOPIC, self.identity.agent_id, value))
        return value

    def _own_backlog(self) -> float:
        """(Scrape thread) Tasks of this module in Kafka not yet done by its agents; NaN if Kafka does not answer
        (a failing gauge would fail the whole scrape)."""
        with self._backlog_lock:
            if self._stop.is_set():
                return math.nan
            if self._backlog_monitor is None:
                self._backlog_monitor = self.clients.backlog()
            try:
                return float(self._backlog_monitor.backlog(self.spec.name, self.module.name))
            except KafkaException:
                return math.nan
