"""The peer benchmarks' summary: the engine against each peer, and against the best peer per concurrency."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from peers import GOAL_RATIO, PeerResult, best_by_slots, rows  # noqa: E402


def _peer(name: str, slots: int, rate: float) -> PeerResult:
    return PeerResult(name, slots, 100, 200, 200 / rate, rate, 1.0, f"{name} config")


def test_the_goal_is_held_against_the_fastest_peer_at_each_concurrency():
    results = [_peer("quix", 1, 300.0), _peer("celery-redis", 1, 500.0), _peer("quix", 4, 900.0),
               _peer("ray", 4, 400.0)]
    assert {s: r.peer for s, r in best_by_slots(results).items()} == {1: "celery-redis", 4: "quix"}
    table = {r.name: r for r in rows(results, {1: 1200.0, 4: 1500.0})}
    best1, best4 = table["engine vs best peer, c=1"], table["engine vs best peer, c=4"]
    assert best1.baseline == 500.0 and best1.ratio == 2.4 and best1.passed is True
    assert best4.baseline == 900.0 and round(best4.ratio, 3) == round(1500 / 900, 3) and best4.passed is False
    assert table["engine vs quix, c=1"].passed is None and table["engine vs quix, c=1"].ratio == 4.0
    assert GOAL_RATIO == 2.0


def test_a_concurrency_the_engine_did_not_run_has_no_row():
    assert rows([_peer("quix", 2, 300.0)], {1: 1000.0}) == []
