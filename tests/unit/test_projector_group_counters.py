"""The counters of a projector group are the sums of its processes' counters."""

from __future__ import annotations

from scalebox_stream.projector.group import _summed
from scalebox_stream.projector.stats import ProjectorStats


def test_group_counters_add_up_and_span_first_start_to_last_commit():
    a = ProjectorStats(batches=3, events=3000, applied=2990, duplicates=10, dead_letters=1, db_reconnects=0,
                       first_batch_at=10.0, last_batch_at=12.0)
    b = ProjectorStats(batches=2, events=1000, applied=1000, duplicates=0, dead_letters=0, db_reconnects=2,
                       first_batch_at=10.5, last_batch_at=13.0)
    idle = ProjectorStats()  # a process that got no partition
    total = _summed([a, b, idle])
    assert (total.batches, total.events, total.applied, total.duplicates, total.dead_letters,
            total.db_reconnects) == (5, 4000, 3990, 10, 1, 2)
    assert (total.first_batch_at, total.last_batch_at) == (10.0, 13.0)
    assert total.rate() == 4000 / 3.0


def test_no_batches_at_all_gives_no_rate():
    assert _summed([ProjectorStats(), ProjectorStats()]).rate() == 0.0
