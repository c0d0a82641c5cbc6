"""The contiguous-watermark offset tracker."""

from scalebox_stream.agent.offsets import PartitionTracker, parse_metadata


def test_watermark_advances_only_over_contiguous_finished_offsets():
    t = PartitionTracker(10)
    for o in (10, 11, 12, 13):
        t.start(o)
    t.finish(12)
    t.finish(13)
    assert t.watermark == 10
    assert parse_metadata(t.watermark, t.metadata()) == {12, 13}
    t.finish(10)
    assert t.watermark == 11
    t.finish(11)
    assert t.watermark == 14
    assert t.metadata() == ""
    assert t.in_flight == 0


def test_redelivery_skips_offsets_finished_beyond_the_watermark():
    first = PartitionTracker(0)
    for o in range(5):
        first.start(o)
    for o in (1, 3, 4):
        first.finish(o)
    committed, meta = first.watermark, first.metadata()
    second = PartitionTracker(committed, parse_metadata(committed, meta))
    assert [o for o in range(5) if not second.is_done(o)] == [0, 2]
    second.start(0)
    second.finish(0)
    assert second.watermark == 2


def test_unknown_metadata_is_ignored():
    assert parse_metadata(5, "something else") == set()
    assert parse_metadata(5, "sbx1:1,x") == set()
    assert parse_metadata(5, None) == set()
