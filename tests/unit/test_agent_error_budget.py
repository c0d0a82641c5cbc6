"""A tripped error budget travels in the next transaction: the slot that trips it only queues the suspend command
and the ModuleState event, so the other slots never wait on it (and no slot makes a Kafka client)."""

from __future__ import annotations

import json
import sys
import threading
import time

import confluent_kafka
import confluent_kafka.admin
from fakes.agent import APP, CODEC, MODULE, P0, parts, task

from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.slots import Slots
from scalebox_stream.agent.task_runner import AttemptReport, OutMessage
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.kafka.control import Command
from scalebox_stream.kafka.topics import CONTROL_TOPIC, EVENTS_TOPIC
from scalebox_stream.policy.budget import ErrorBudget

IDENTITY = AgentIdentity(APP, MODULE, host="h1", cluster="c1", agent_id="agent-1")
TASKS, BAD_AT, SLOTS = 80, 30, 4


class _NoAdmission:
    active = False

    def release(self, token: int | None) -> None:
        assert token is None


class _Runner:
    """Tasks take 5 ms. Once the bad task runs, the tasks the three other slots start wait until the budget has
    tripped; the bad task fails once all three wait (so the trip happens while they run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.held = 0
        self.bad_running, self.tripped = threading.Event(), threading.Event()
        self.runs: list[tuple[str, float, float]] = []  # (thread, start, end)

    def run(self, t, slot, publish) -> AttemptReport:
        began = time.monotonic()
        with self.lock:
            self.inside += 1
        try:
            record = OutMessage("test.reports", t.event.task_id, f"finished {t.offset}".encode())
            if t.event.payload["body"] == "bad":
                self.bad_running.set()
                deadline = time.monotonic() + 5
                while self.held < SLOTS - 1 and time.monotonic() < deadline:
                    time.sleep(0.0005)
                return AttemptReport([record], "failed")
            if self.bad_running.is_set():
                with self.lock:
                    self.held += 1
                self.tripped.wait(5)
            else:
                time.sleep(0.005)
            return AttemptReport([record], "succeeded")
        finally:
            with self.lock:
                self.inside -= 1
                self.runs.append((threading.current_thread().name, began, time.monotonic()))

    def accepted(self, t, slot) -> OutMessage:
        raise AssertionError("admission is off")


def _forbid_clients_on_slot_threads(monkeypatch) -> list[str]:
    """Replace the client classes everywhere scalebox imported them: a slot thread making one is recorded."""
    made: list[str] = []
    for holder in [confluent_kafka, confluent_kafka.admin] + [m for n, m in sys.modules.items()
                                                             if n.startswith("scalebox_stream") and m is not None]:
        for name in ("Producer", "Consumer", "AdminClient"):
            real = getattr(holder, name, None)
            if real is None:
                continue

            def recording(*args, _real=real, **kw):
                made.append(threading.current_thread().name)
                return _real(*args, **kw)

            monkeypatch.setattr(holder, name, recording)
    return made


def test_a_tripped_budget_is_queued_for_the_next_transaction_while_three_other_slots_keep_running(monkeypatch):
    made = _forbid_clients_on_slot_threads(monkeypatch)
    p = parts(slots=SLOTS)
    p.consumer.assign(P0)
    queued: list[tuple[float, int, bytes]] = []
    runner = _Runner()

    def put(record: OutMessage) -> None:
        if record.topic == CONTROL_TOPIC or b"ModuleState" in record.value:
            queued.append((time.monotonic(), runner.inside, record.value))
            runner.tripped.set()
        p.checkpoint.put(record)

    control = ModuleControl(IDENTITY, ErrorBudget(1, 60.0), p.dispatcher.lock, put,
                            lambda e: OutMessage(EVENTS_TOPIC, e.task_id, CODEC.encode(e)))
    p.hold[0] = lambda: control.suspended
    counting: list[float] = []
    count = control.count

    def timed_count(outcome: str) -> None:
        began = time.perf_counter()
        count(outcome)
        counting.append(time.perf_counter() - began)

    control.count = timed_count  # type: ignore[method-assign]
    slots = Slots(SLOTS, p.dispatcher, runner, _NoAdmission(), p.checkpoint, control, AgentTelemetry(IDENTITY))
    for offset in range(TASKS):
        p.checkpoint.trackers[P0].start(offset)
        p.dispatcher.add(task(offset, body="bad" if offset == BAD_AT else "ok"))
    p.broker.hang = threading.Event()  # any transaction now would block: no slot may need one
    slots.start_waiting()
    deadline = time.monotonic() + 10
    while (len(p.dispatcher.free_slots) < SLOTS or not control.suspended) and time.monotonic() < deadline:
        time.sleep(0.005)
    slots.shutdown()
    assert control.suspended and len(p.dispatcher.free_slots) == SLOTS

    (trip, inside, _), _ = queued
    assert inside == SLOTS - 1  # the three other slots were inside tasks when it tripped
    others = [r for r in runner.runs if r[1] <= trip <= r[2]]
    assert len(others) == SLOTS - 1
    assert all(end - trip < 0.2 for _, _, end in others)  # they ended without waiting on it
    assert len({name for name, _, _ in runner.runs}) == SLOTS  # four slot threads took turns
    assert len(runner.runs) > 2 * SLOTS  # the others kept finishing tasks before the trip
    assert max(counting) < 0.05 and len(counting) == len(runner.runs)
    assert not [r for r in runner.runs if r[1] > trip]  # nothing started after the trip
    assert len(p.dispatcher.waiting) == TASKS - len(runner.runs)
    assert not [name for name in made + p.broker.clients_made_on if name.startswith("slot")]
    assert not p.broker.transactions

    p.broker.hang.set()
    p.broker.hang = None
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    (command,) = txn.on(CONTROL_TOPIC)
    assert command[1] == f"{APP}/{MODULE}"
    assert json.loads(command[2]) == {"command": "suspend", "reason": "error budget spent: 1 failed attempts "
                                                                      "within 60s"}
    states = [e for e in (CODEC.decode(r[2]) for r in txn.on(EVENTS_TOPIC)) if e.event_type == "ModuleState"]
    assert [(e.payload["state"], e.payload["agent"], e.task_id) for e in states] == [
        ("suspended", "agent-1", f"module:{MODULE}")]
    assert len(txn.on("test.reports")) == len(runner.runs) and len(txn.on(EVENTS_TOPIC)) == 1
    assert txn.offsets[P0][0] == len(runner.runs) and p.dispatcher.in_flight == 0


def test_commands_suspend_and_resume_the_module_and_resume_forgets_the_failures():
    p = parts()
    records: list[OutMessage] = []
    budget = ErrorBudget(2, 60.0)
    control = ModuleControl(IDENTITY, budget, p.dispatcher.lock, records.append,
                            lambda e: OutMessage(EVENTS_TOPIC, e.task_id, CODEC.encode(e)))
    control.count("failed")
    assert not control.suspended and not records
    control.obey([Command(APP, MODULE, "resume")])  # not suspended: nothing to do
    control.obey([Command(APP, MODULE, "suspend", "maintenance"), Command(APP, MODULE, "suspend")])
    assert control.suspended
    control.obey([Command(APP, MODULE, "resume")])
    assert not control.suspended and budget.state.failures == ()
    states = [CODEC.decode(r.value).payload for r in records]
    assert [(s["state"], s["reason"]) for s in states] == [("suspended", "maintenance"),
                                                          ("resumed", "resumed by command")]
    control.count("failed")
    control.count("succeeded")
    assert not control.suspended
    control.count("timed_out")
    assert control.suspended and records[-2].topic == CONTROL_TOPIC
    control.count("failed")  # already tripped: nothing more
    assert len(records) == 4


def test_a_module_without_a_budget_never_suspends_itself():
    records: list[OutMessage] = []
    control = ModuleControl(IDENTITY, None, threading.RLock(), records.append, lambda e: OutMessage("x", "k", b""))
    for _ in range(100):
        control.count("failed")
    assert not control.suspended and not records
