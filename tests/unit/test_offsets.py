"""The contiguous-watermark offset tracker and its commit-metadata lease record."""

from scalebox_stream.agent.offsets import PartitionState, PartitionTracker, parse_metadata


def test_watermark_advances_only_over_contiguous_finished_offsets():
    t = PartitionTracker(10)
    for o in (10, 11, 12, 13):
        t.start(o)
    t.finish(12)
    t.finish(13)
    assert t.watermark == 10
    assert parse_metadata(t.watermark, t.metadata()).done == {12, 13}
    t.finish(10)
    assert t.watermark == 11
    t.finish(11)
    assert t.watermark == 14
    assert t.metadata() == ""
    assert t.in_flight == 0


def test_redelivery_skips_finished_offsets_and_sees_lost_attempts():
    first = PartitionTracker(0)
    for o in range(6):
        first.start(o)
        if o < 5:
            first.mark_running(o, attempt=1 if o != 2 else 3)
    for o in (1, 3, 4):
        first.finish(o)
    committed, meta = first.watermark, first.metadata()
    state = parse_metadata(committed, meta)
    assert state == PartitionState(done={1, 3, 4}, running={0: 1, 2: 3}), "offset 5 was received, never run"
    second = PartitionTracker(committed, state)
    assert [o for o in range(6) if not second.is_done(o)] == [0, 2, 5]
    assert second.lost_attempt(5) is None
    assert (second.lost_attempt(0), second.lost_attempt(2), second.lost_attempt(1)) == (1, 3, None)
    second.start(0)
    second.mark_running(0, 2)
    assert second.lost_attempt(0) is None
    # offset 2 is still lost (not yet redelivered to this owner), so it stays in the record
    assert parse_metadata(second.watermark, second.metadata()).running == {0: 2, 2: 3}
    second.finish(0)
    assert second.watermark == 2


def test_unknown_or_damaged_metadata_is_ignored():
    assert parse_metadata(5, "something else") == PartitionState()
    assert parse_metadata(5, "sbx2:1,x;") == PartitionState()
    assert parse_metadata(5, None) == PartitionState()
    assert parse_metadata(5, "sbx2:;0@2") == PartitionState(running={5: 2})


def test_offsets_never_delivered_do_not_hold_the_watermark():
    """Transaction markers take offsets that a read-committed consumer never sees."""
    t = PartitionTracker(0)
    t.start(0)
    t.finish(0)
    t.start(2)  # offset 1 is a commit marker
    assert t.watermark == 2
    t.start(5)  # 3 and 4: marker and an aborted record
    t.finish(5)
    assert t.watermark == 2
    t.finish(2)
    assert t.watermark == 6
    assert t.metadata() == ""


def test_reaching_the_end_moves_past_a_trailing_marker():
    t = PartitionTracker(0)
    t.start(0)
    t.finish(0)
    assert t.watermark == 1
    assert t.reached_end(2) is True  # offset 1 was the commit marker
    assert t.watermark == 2
    assert t.reached_end(2) is False
    t.start(3)
    assert t.reached_end(5) is False, "offset 3 is still running"
    t.finish(3)
    assert t.watermark == 5


def test_a_copy_moves_on_its_own():
    t = PartitionTracker(5, PartitionState(done={7}, running={8: 2}))
    for o in (5, 6):
        t.start(o)
    t.mark_running(6, 1)
    twin = t.copy()
    twin.finish(5)
    twin.finish(6)
    assert (twin.watermark, t.watermark) == (8, 5)
    assert t.in_flight == 2 and twin.in_flight == 0
    assert t.metadata() != twin.metadata()
    assert parse_metadata(t.watermark, t.metadata()).running == {6: 1, 8: 2}


def test_a_copy_keeps_the_position_last_committed_and_moving_changes_the_position():
    tracker = PartitionTracker(10)
    tracker.committed = tracker.position()
    twin = tracker.copy()
    assert twin.committed == tracker.position()
    twin.start(10)
    twin.finish(10)
    assert twin.position() != twin.committed  # the watermark moved: it must be committed again
    twin.committed = twin.position()
    twin.start(11)
    twin.mark_running(11, 1)
    assert twin.position()[0] == 11 and twin.position() != twin.committed  # the lease record changed
