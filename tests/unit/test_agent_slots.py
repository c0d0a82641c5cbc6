"""Slots: a refused task goes back to the dispatcher, a crashing attempt keeps its slot and is reported, an
abandoned one is not reported."""

from __future__ import annotations

import time

from fakes.agent import P0, parts, task

from scalebox_stream.agent.control import ModuleControl
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.slots import Slots
from scalebox_stream.agent.task_runner import AttemptReport, OutMessage
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.policy.admission import ADMIT, Verdict

IDENTITY = AgentIdentity("app", "m", host="h1", cluster="c1", agent_id="agent-s")


class _Admission:
    active = True

    def __init__(self, admit: bool) -> None:
        self.admit, self.released = admit, []

    def check(self, event, slot=0):
        return (ADMIT, 7) if self.admit else (Verdict(False, "disk full"), None)

    def release(self, token) -> None:
        self.released.append(token)


class _Runner:
    def __init__(self, crash: bool = False) -> None:
        self.crash = crash

    def run(self, t, slot, publish) -> AttemptReport:
        if self.crash:
            raise RuntimeError("runner bug")
        return AttemptReport([OutMessage("test.reports", t.event.task_id, b"ok")], "succeeded")

    def accepted(self, t, slot) -> OutMessage:
        return OutMessage("test.accepted", t.event.task_id, str(slot).encode())

    def crash_report(self, t, slot, cause, may_retry=True) -> AttemptReport:
        return AttemptReport([OutMessage("test.crashed", t.event.task_id, str(cause).encode())], "error")


def _slots(p, runner, admission) -> Slots:
    control = ModuleControl(IDENTITY, None, p.dispatcher.lock, p.checkpoint.put, lambda e: None)
    return Slots(1, p.dispatcher, runner, admission, p.checkpoint, control, AgentTelemetry(IDENTITY))


def _settle(p) -> None:
    deadline = time.monotonic() + 5
    while len(p.dispatcher.free_slots) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_refused_task_says_it_was_accepted_and_goes_back_for_a_recheck():
    p = parts(slots=1)
    p.consumer.assign(P0)
    p.checkpoint.trackers[P0].start(0)
    p.dispatcher.add(task(0))
    admission = _Admission(admit=False)
    slots = _slots(p, _Runner(), admission)
    slots.start_waiting()
    _settle(p)
    p.dispatcher.release_due(p.checkpoint.holds)
    ((_, _, again),) = p.dispatcher.delayed
    assert again.refusals == 1 and again.accepted_at is None and p.dispatcher.in_flight == 0
    p.checkpoint.put(OutMessage("x", "k", b"nudge"))
    p.checkpoint.publish()
    (txn,) = p.broker.transactions
    assert [r[0] for r in txn.records] == ["test.accepted", "x"] and admission.released == [None]
    slots.shutdown()


def test_an_admitted_task_releases_its_host_token_and_is_reported():
    p = parts(slots=1)
    p.consumer.assign(P0)
    p.checkpoint.trackers[P0].start(0)
    p.dispatcher.add(task(0))
    admission = _Admission(admit=True)
    slots = _slots(p, _Runner(), admission)
    slots.start_waiting()
    _settle(p)
    p.checkpoint.publish()
    assert admission.released == [7] and p.broker.committed[P0] == (1, "")
    slots.shutdown()


def test_a_crashing_attempt_is_reported_as_an_error_and_the_slot_goes_on():
    p = parts(slots=1)
    p.consumer.assign(P0)
    for offset in range(2):
        p.checkpoint.trackers[P0].start(offset)
        p.dispatcher.add(task(offset))
    slots = _slots(p, _Runner(crash=True), _Admission(admit=True))
    slots.start_waiting()
    _settle(p)
    p.checkpoint.publish()
    assert p.broker.committed[P0] == (2, "") and p.dispatcher.in_flight == 0
    records = [r for txn in p.broker.transactions for r in txn.records]
    assert [(r[0], r[2]) for r in records] == [("test.crashed", b"runner bug")] * 2  # never committed bare
    slots.shutdown()


def test_abandoned_attempts_are_not_reported():
    p = parts(slots=1)
    p.consumer.assign(P0)
    p.checkpoint.trackers[P0].start(0)
    p.dispatcher.add(task(0))
    slots = _slots(p, _Runner(), _Admission(admit=True))
    slots.abandoned = True
    slots.start_waiting()
    _settle(p)
    p.checkpoint.publish()
    assert not p.broker.transactions and p.dispatcher.in_flight == 1
    slots.shutdown()
