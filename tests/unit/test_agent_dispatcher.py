"""The dispatcher: waiting, delayed and in-flight tasks, free slots, and the one in-flight count."""

from __future__ import annotations

import threading
from dataclasses import replace

from fakes.agent import P0, P1, task

from scalebox_stream.agent.dispatcher import Dispatcher
from scalebox_stream.events import now_us


def _dispatcher(slots: int = 2) -> tuple[Dispatcher, list[bool], list[int]]:
    held, starts = [False], []
    return Dispatcher(slots, held=lambda: held[0], on_start=lambda: starts.append(1)), held, starts


def test_waiting_tasks_start_on_free_slots_and_count_as_in_flight():
    d, _, starts = _dispatcher(2)
    for offset in range(3):
        d.add(task(offset))
    first, second = d.next_task(), d.next_task()
    assert (first[0].offset, first[1]) == (0, 0) and (second[0].offset, second[1]) == (1, 1)
    assert d.next_task() is None  # no free slot
    assert d.in_flight == 2 and d.running[P0] == 2 and len(starts) == 2
    assert first[0].accepted_at is not None and d.last_start > 0
    # The slot that finished takes the next task itself.
    third = d.next_task(first[1])
    assert (third[0].offset, third[1]) == (2, 0) and d.in_flight == 3
    assert d.next_task(third[1]) is None and list(d.free_slots) == [0]


def test_the_in_flight_count_goes_down_only_when_a_task_ends():
    d, _, _ = _dispatcher(2)
    d.add(task(0))
    d.add(task(0, P1))
    d.next_task(), d.next_task()
    d.ended([P0])
    assert d.in_flight == 1 and d.running[P0] == 0 and d.running[P1] == 1
    assert d.running_on([P1]) and not d.running_on([P0])
    d.ended([])
    assert d.in_flight == 1


def test_nothing_starts_while_held_and_the_slot_goes_back():
    d, held, _ = _dispatcher(1)
    d.add(task(0))
    d.add(task(1))
    _, slot = d.next_task()
    held[0] = True
    assert d.next_task(slot) is None and list(d.free_slots) == [slot]  # back among the free ones
    assert d.next_task() is None and len(d.waiting) == 1
    held[0] = False
    assert d.next_task()[0].offset == 1


def test_a_task_due_later_waits_for_its_time():
    d, _, _ = _dispatcher()
    d.add(task(0, not_before=now_us() + 60_000_000))
    d.add(task(1, not_before=now_us() - 1))
    assert [t.offset for t in d.waiting] == [1] and len(d.delayed) == 1 and d.buffered == 2
    d.release_due(lambda *_: True)
    assert len(d.delayed) == 1
    d.delayed[0] = (now_us() - 1, *d.delayed[0][1:])
    d.release_due(lambda *_: True)
    assert [t.offset for t in d.waiting] == [1, 0] and not d.delayed


def test_a_refused_task_leaves_flight_and_waits_for_a_recheck():
    d, _, _ = _dispatcher()
    d.add(task(0))
    picked, _ = d.next_task()
    assert picked.refusals == 0 and picked.accepted_at is not None
    d.refuse(replace(picked, accepted_at=None), "disk full")  # the slot reported the acceptance on its own
    d.release_due(lambda source, assignment: True)
    assert d.in_flight == 0 and d.running[P0] == 0
    ((due, offset, again),) = d.delayed
    assert again.refusals == 1 and offset == 0 and due > now_us()
    d.delayed[0] = (now_us() - 1, offset, again)
    d.release_due(lambda *_: True)
    picked, _ = d.next_task()
    assert picked.accepted_at is None  # a re-checked task was already reported accepted


def test_a_refused_task_of_a_partition_given_up_is_dropped():
    d, _, _ = _dispatcher()
    d.add(task(0))
    picked, _ = d.next_task()
    d.refuse(picked, "busy")
    d.release_due(lambda source, assignment: False)
    assert d.in_flight == 0 and not d.delayed and not d.waiting


def test_forget_drops_the_tasks_of_partitions_given_up():
    d, _, _ = _dispatcher()
    d.add(task(0))
    d.add(task(0, P1))
    d.add(task(1, P1, not_before=now_us() + 60_000_000))
    d.add(task(2, P0, not_before=now_us() + 60_000_000))
    d.forget(lambda source: source == P0)
    assert [t.source for t in d.waiting] == [P0] and [e[2].source for e in d.delayed] == [P0]
    d.clear()
    assert d.buffered == 0


def test_slots_racing_for_tasks_start_each_task_once():
    d, _, _ = _dispatcher(4)
    for offset in range(2000):
        d.add(task(offset))
    taken: list[int] = []

    def slot() -> None:
        pick = d.next_task()
        while pick is not None:
            taken.append(pick[0].offset)
            d.ended([P0])
            pick = d.next_task(pick[1])

    threads = [threading.Thread(target=slot) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(2000)) and d.in_flight == 0 and sorted(d.free_slots) == [0, 1, 2, 3]
