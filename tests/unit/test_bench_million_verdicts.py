"""The million-task benchmark's memory verdicts: the broker judged on its live heap (read from jcmd's
GC.heap_info), the agents and the projector on their RSS."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_million import Window, heap_used_bytes, verdicts  # noqa: E402

HEAP_INFO = """12477:
 garbage-first heap   total 771072K, used 245908K [0x00000000d0000000, 0x0000000100000000)
  region size 1024K, 1 young (1024K), 0 survivors (0K)
 Metaspace       used 61120K, committed 62400K, reserved 1114112K
"""


def test_the_heaps_used_size_is_read_from_gc_heap_info():
    assert heap_used_bytes(HEAP_INFO) == 245908 * 1024
    assert heap_used_bytes("12477:\nCommand executed successfully\n") is None


def _window(index: int, projector: float, broker_rss: float, heap: float | None) -> Window:
    return Window(index, 1000, 10.0, {"agent a": 100.0, "projector": projector, "broker": broker_rss}, heap,
                  5500, 1_000_000, 500_000, 1000 * index)


def test_the_broker_is_judged_on_its_live_heap_not_its_rss():
    windows = [_window(1, 80, 500, 180), _window(2, 80, 550, 180), _window(3, 82, 760, 185)]
    judged = {goal: passed for goal, _, passed in verdicts(windows)}
    assert judged["memory flat: broker live heap last <= 1.2 x second"]
    assert not any(goal.startswith("memory flat: broker last") for goal in judged)  # RSS 760/550 not judged
    assert judged["memory flat: projector last <= 1.2 x second"]


def test_a_growing_live_heap_or_projector_fails():
    windows = [_window(1, 80, 500, 180), _window(2, 80, 550, 180), _window(3, 120, 560, 260)]
    judged = {goal: passed for goal, _, passed in verdicts(windows)}
    assert not judged["memory flat: broker live heap last <= 1.2 x second"]
    assert not judged["memory flat: projector last <= 1.2 x second"]


def test_without_a_heap_reading_the_broker_is_not_judged():
    windows = [_window(1, 80, 500, None), _window(2, 80, 550, None), _window(3, 80, 900, None)]
    assert not any("broker" in goal for goal, _, _ in verdicts(windows))
