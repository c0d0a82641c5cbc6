"""Short ids that can be typed back, prefix resolution, and which table columns fit a terminal."""

from __future__ import annotations

import pytest
from rich.console import Console

from scalebox_stream.cli.tables import TASK_COLUMNS, fitted
from scalebox_stream.policy.display import (
    Column,
    PrefixError,
    fit_columns,
    id_prefix,
    pack_fields,
    prefix_range,
    resolve_prefix,
    short_ids,
)

A = "5e943d67-8840-5eeb-9743-622e725a07ef"
B = "5e943d67-8899-4aaa-9743-622e725a07ef"
C = "1429c0d9-abc9-49a2-8e70-e67f35841d52"


def test_short_ids_are_eight_characters_unless_another_id_shares_them() -> None:
    assert short_ids([A, C]) == {A: "5e943d67", C: "1429c0d9"}
    # B shares 11 characters with A (dash included): both need 12 to be told apart
    assert short_ids([A, B, C]) == {A: "5e943d67-884", B: "5e943d67-889", C: "1429c0d9"}


def test_short_ids_account_for_ids_not_listed() -> None:
    """A task of another app that shares the prefix makes the listed one longer: the prefix stays unique."""
    assert short_ids([A], known=[A, B]) == {A: "5e943d67-884"}


def test_every_short_id_resolves_back_to_its_id() -> None:
    ids = [A, B, C, "5e900000-0000-4000-8000-000000000000"]
    for full, short in short_ids(ids).items():
        assert resolve_prefix(short, [i for i in ids if i.startswith(short)]) == full


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(PrefixError) as caught:
        resolve_prefix("5e9", [A, B])
    assert "ambiguous: 2 tasks match" in str(caught.value)
    assert f"\n  {A}\n  {B}" in str(caught.value)
    with pytest.raises(PrefixError, match="more than 5 tasks"):
        resolve_prefix("5", [A] * 6)
    with pytest.raises(PrefixError, match="no task with an id starting with 'ff'"):
        resolve_prefix("ff", [])


def test_a_prefix_is_hex_and_dashes_and_becomes_an_index_range() -> None:
    assert id_prefix(" 5E943D67 ") == "5e943d67"
    for bad in ("", "xyz", "5e%", "5_", "-5"):
        with pytest.raises(PrefixError):
            id_prefix(bad)
    low, high = prefix_range("5e943d67-88")
    assert low == "5e943d6788" + "0" * 22 and high == "5e943d6788" + "f" * 22
    assert low.replace("-", "") <= A.replace("-", "") <= high


def test_columns_that_fit_keep_their_natural_width() -> None:
    cols = [Column("id", 8, 8, 10), Column("status", 9, 9, 9), Column("body", 20, 5, 5)]
    assert fit_columns(cols, 80) == {"id": 8, "status": 9, "body": 20}


def test_cuttable_columns_shrink_widest_first_and_statuses_never() -> None:
    cols = [Column("id", 8, 8, 10), Column("status", 9, 9, 9), Column("body", 30, 5, 5),
            Column("out", 12, 5, 4)]
    widths = fit_columns(cols, 8 + 9 + 20 + 12 + 6)
    assert widths == {"id": 8, "status": 9, "body": 20, "out": 12}
    widths = fit_columns(cols, 40)
    assert widths["id"] == 8 and widths["status"] == 9 and sum(widths.values()) + 6 == 40


def test_the_lowest_ranked_columns_are_dropped_when_cutting_is_not_enough() -> None:
    cols = [Column("id", 8, 8, 10), Column("status", 9, 9, 9), Column("host", 20, 20, 1),
            Column("attempts", 8, 8, 6)]
    assert fit_columns(cols, 40) == {"id": 8, "status": 9, "attempts": 8}
    assert fit_columns(cols, 5) == {"id": 8}  # the first-ranked column stays, even too wide


def test_a_task_table_at_80_columns_cuts_no_status_and_shows_typable_ids() -> None:
    rows = [[A[:8], "primes", "calc", "succeeded", "0", "1", "a-rather-long-host-name", "0" * 50, "x" * 30],
            [C[:8], "primes", "router", "retrying", "", "12", "vm", "1000", ""]]
    table, hidden = fitted(TASK_COLUMNS, rows, 80)
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert lines[1].split()[:4] == [A[:8], "primes", "calc", "succeeded"]
    assert lines[2].split()[:4] == [C[:8], "primes", "router", "retrying"]
    assert "custom_out" in hidden and "…" in lines[1]  # the body is cut, with an ellipsis


def test_fields_wrap_between_items_never_inside_one() -> None:
    items = ["created_at=2026-12-05T00:10:45.929674+00:00", "accepted_at=2026-12-05T00:10:46.674187+00:00",
             "run_s=0.05", "container_id=" + "c" * 70]
    lines = pack_fields("times:", items, 80)
    assert lines == ["times: " + items[0], "  " + items[1] + "  run_s=0.05", "  " + items[3]]
    assert pack_fields("task 5e94", ["primes/calc", "status ok"], 80) == ["task 5e94  primes/calc  status ok"]
