"""Module control in an agent: the error budget, the suspend and resume commands, and ModuleState events.

A slot counts each attempt's outcome against the module's error budget (see `policy.budget`). When it trips,
the agent suspends itself and queues two records for its next transaction: the suspend command for the module's
other agents (on the control topic) and a ModuleState event. The slot only queues them: it never creates a
client or waits on the network. Commands from the control topic (`scalebox module suspend/resume`) are obeyed
on the poll thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import OutMessage
from scalebox_stream.events import Event, EventStamp, ModuleState
from scalebox_stream.kafka.control import Command, encode_command
from scalebox_stream.policy.budget import ErrorBudget
from scalebox_stream.policy.greedy import greedy_reason, short_streak

log = logging.getLogger(__name__)


class ModuleControl:
    """Whether this agent's module is suspended, and why (see the module docstring)."""

    def __init__(self, identity: AgentIdentity, budget: ErrorBudget | None, lock: threading.RLock,
                 put: Callable[[OutMessage], None], to_events: Callable[[Event], OutMessage],
                 task_min_seconds: float | None = None) -> None:
        """`lock`: the dispatcher's (a slot about to take a task sees the suspension); `put` queues a record for
        the next transaction; `to_events` makes the record of an event; `task_min_seconds`: the module's minimum
        attempt duration (GREEDY slots, see `policy.greedy`)."""
        self.identity = identity
        self.budget = budget
        self.task_min_seconds = task_min_seconds
        self._short: dict[int, int] = {}
        self.suspended = False
        self._lock = lock
        self._put = put
        self._to_events = to_events

    def count(self, outcome: str) -> None:
        """(Slot thread) Count an attempt's outcome; suspend the module when the budget is spent."""
        budget = self.budget
        if budget is None:
            return
        with self._lock:
            if self.suspended or budget.state.tripped or not budget.record(outcome, time.time()).tripped:
                return
            reason = f"error budget spent: {budget.max_failures} failed attempts within {budget.window_s:g}s"
            log.error("suspending module %s: %s", self.identity.module, reason)
            self._put(OutMessage(*encode_command(Command(self.identity.app, self.identity.module, "suspend",
                                                         reason))))
            self._set_suspended(True, reason)

    def timed(self, slot: int, run_s: float) -> None:
        """(Slot thread) Note how long an attempt of `slot` ran; a GREEDY slot suspends the module on this agent
        (the other agents of the module go on, as Scalebox's other slots do)."""
        min_s = self.task_min_seconds
        if not min_s:
            return
        with self._lock:
            streak = self._short[slot] = short_streak(self._short.get(slot, 0), run_s, min_s)
            if self.suspended or (reason := greedy_reason(slot, streak, min_s)) is None:
                return
            self._short.clear()
            log.error("suspending module %s on agent %s: %s", self.identity.module, self.identity.agent_id, reason)
            self._set_suspended(True, reason)

    def obey(self, commands: Iterable[Command]) -> None:
        """(Poll thread) Apply suspend and resume commands."""
        for command in commands:
            with self._lock:
                if command.command == "suspend" and not self.suspended:
                    self._set_suspended(True, command.reason or "suspended by command")
                elif command.command == "resume" and self.suspended:
                    if self.budget is not None:
                        self.budget.resume()
                    self._set_suspended(False, command.reason or "resumed by command")

    def _set_suspended(self, suspended: bool, reason: str) -> None:
        self.suspended = suspended
        module, identity = self.identity.module, self.identity
        log.warning("module %s %s: %s", module, "suspended" if suspended else "resumed", reason)
        state = ModuleState(state="suspended" if suspended else "resumed", reason=reason, agent=identity.agent_id)
        self._put(self._to_events(EventStamp.for_agent(identity).event(state, task_id=f"module:{module}")))
