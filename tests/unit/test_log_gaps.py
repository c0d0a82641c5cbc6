"""What `replay` says when the events topic lost its oldest events."""

from __future__ import annotations

from datetime import UTC, datetime

from scalebox_stream.kafka.log_start import Gap, describe_gaps


def test_each_partition_names_the_offsets_gone_and_the_time_before_which_events_are_gone():
    kept_ms = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    text = describe_gaps("sbx.events", [Gap(0, 120, 300, kept_ms), Gap(3, 7, 7, None)])
    assert text.splitlines() == [
        "sbx.events no longer starts at its first event: 127 offset(s) are gone from 2 partition(s)",
        "  partition 0: offsets 0-119 (events before 2026-01-02 03:04:05 UTC are gone)",
        "  partition 3: offsets 0-6 (every event it held is gone)",
    ]
