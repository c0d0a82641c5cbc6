"""Parsing of kafka-transactions find-hanging output."""

from scalebox_stream.local.hanging import Hanging, parse_find_hanging

OUTPUT = """Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)\t
sbx.events\t0        \t3310      \t0            \t6               \t22214      \t1795652344924\t32           \t
"""


def test_rows_are_parsed_and_the_header_skipped():
    assert parse_find_hanging(OUTPUT) == [Hanging("sbx.events", 0, 3310, 22214)]
    assert parse_find_hanging(OUTPUT.splitlines()[0]) == []
