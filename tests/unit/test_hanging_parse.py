"""Parsing of kafka-transactions find-hanging output, and what an abort round does when one abort fails."""

import pytest

from scalebox_stream.local import hanging
from scalebox_stream.local.hanging import AbortIncomplete, Hanging, abort_hanging, parse_find_hanging

OUTPUT = """Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)\t
sbx.events\t0        \t3310      \t0            \t6               \t22214      \t1795652344924\t32           \t
"""


def test_rows_are_parsed_and_the_header_skipped():
    assert parse_find_hanging(OUTPUT) == [Hanging("sbx.events", 0, 3310, 22214)]
    assert parse_find_hanging(OUTPUT.splitlines()[0]) == []


def test_one_failed_abort_does_not_keep_the_others_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    two = OUTPUT + "sbx.events\t1\t3311\t0\t6\t500\t1795652344924\t32\t\n"
    calls: list[tuple[str, ...]] = []

    def tool(bootstrap: str, *args: str, timeout_s: float = 120) -> str:  # noqa: ARG001 - the tool's signature
        calls.append(args)
        if args[0] == "find-hanging":
            return two
        if args[4] == "0":
            raise RuntimeError("kafka-transactions abort failed: timed out")
        return ""

    monkeypatch.setattr(hanging, "_tool", tool)
    with pytest.raises(AbortIncomplete, match=r"1 hanging transaction\(s\) not aborted: sbx.events\[0\]") as failed:
        abort_hanging("127.0.0.1:9")
    assert failed.value.aborted == [Hanging("sbx.events", 1, 3311, 500)]
    assert [c[0] for c in calls] == ["find-hanging", "abort", "abort"]
