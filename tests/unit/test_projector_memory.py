"""Handing freed memory back: the pure interval policy, the returner that applies it after batches, and the
projector calling it (over in-memory Kafka and PostgreSQL edges)."""

from __future__ import annotations

from fakes.projector_db import FakeServer
from test_projector_service import TOPIC, Edges, _events, _logs

from scalebox_stream.projector.memory import FreeMemoryReturner, return_free_memory, trim_due
from scalebox_stream.projector.service import ProjectorSettings


def test_trim_is_due_after_work_first_and_then_once_per_interval():
    assert trim_due(100.0, None, 5.0, busy=True)
    assert not trim_due(104.9, 100.0, 5.0, busy=True)
    assert trim_due(105.0, 100.0, 5.0, busy=True)
    assert trim_due(500.0, 100.0, 5.0, busy=True)


def test_trim_is_never_due_without_work_since_the_last():
    assert not trim_due(100.0, None, 5.0, busy=False)
    assert not trim_due(500.0, 100.0, 5.0, busy=False, idle=True)


def test_once_idle_a_fifth_of_the_interval_suffices():
    assert trim_due(101.0, 100.0, 5.0, busy=True, idle=True)
    assert not trim_due(100.9, 100.0, 5.0, busy=True, idle=True)
    assert not trim_due(101.0, 100.0, 5.0, busy=True, idle=False)


def test_an_interval_of_zero_or_less_never_trims():
    assert not trim_due(100.0, None, 0.0, busy=True)
    assert not trim_due(1e9, 0.0, 0.0, busy=True, idle=True)
    assert not trim_due(100.0, None, -1.0, busy=True)


def test_the_returner_releases_at_most_once_per_interval_while_busy():
    now = [0.0]
    calls: list[float] = []
    returner = FreeMemoryReturner(5.0, lambda: calls.append(now[0]), clock=lambda: now[0])
    for t in (0.0, 1.0, 4.9, 5.0, 6.0, 9.9, 10.0, 30.0):
        now[0] = t
        returner.after_batch()
    assert calls == [0.0, 5.0, 10.0, 30.0]
    assert returner.releases == 4


def test_the_returner_releases_once_soon_after_the_batches_stop():
    now = [0.0]
    calls: list[float] = []
    returner = FreeMemoryReturner(5.0, lambda: calls.append(now[0]), clock=lambda: now[0])
    returner.idle()  # nothing done yet: nothing to return
    assert calls == []
    for t in (0.0, 0.5, 2.0):
        now[0] = t
        returner.after_batch()
    for t in (2.2, 2.5, 3.0, 4.0, 20.0):
        now[0] = t
        returner.idle()
    assert calls == [0.0, 2.2]  # the first batch, then once idle (not again while nothing was done)


def test_the_returner_with_interval_zero_never_releases():
    calls: list[int] = []
    returner = FreeMemoryReturner(0.0, lambda: calls.append(1))
    for _ in range(100):
        returner.after_batch()
        returner.idle()
    assert calls == [] and returner.releases == 0


def test_returning_free_memory_runs_on_this_system():
    assert return_free_memory() in (True, False)  # glibc: True; elsewhere a no-op that says so


def test_the_projector_releases_memory_after_batches_and_projects_the_same():
    events = _events(600)
    released: list[int] = []

    def run(interval_s: float) -> FakeServer:
        edges = Edges(_logs(events))
        settings = ProjectorSettings(batch_size=25, reconnect_delay_s=0.001, outage_pause_s=0, poll_timeout_s=0,
                                     trim_interval_s=interval_s)
        projector = edges.projector(settings)
        projector.memory.release = lambda: released.append(1)
        stats = projector.run(until_caught_up=True, install_signals=False)
        assert stats.events == len(events) and stats.batches > 1
        return edges.server

    never = run(0.0)
    assert released == []
    always = run(1e-9)
    assert len(released) > 1
    for server in (never, always):
        assert server.state.applied == {e.event_id for e in events}
    assert always.state.merged_tasks == never.state.merged_tasks
    assert always.offsets_of(TOPIC) == never.offsets_of(TOPIC) != {}


def test_the_prefetch_cap_reaches_the_consumer():
    edges = Edges(_logs(_events(50)))
    edges.projector(ProjectorSettings(prefetch_kbytes=4096, poll_timeout_s=0)).run(until_caught_up=True,
                                                                                   install_signals=False)
    assert edges.consumers[0].config["queued.max.messages.kbytes"] == 4096
