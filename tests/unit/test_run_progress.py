"""How `scalebox run` shows progress without a terminal: a line every few seconds, only when it says
something new, and the summary table; on a terminal, bars (rich) that leave only the summary behind."""

from __future__ import annotations

import io

from rich.console import Console

from scalebox_stream.launch import progress
from scalebox_stream.launch.progress import ProgressView, RunState, progress_line, table


def _state(done: int, failed: int = 0) -> RunState:
    return RunState([{"module": "calc", "created": 10, "waiting": 0, "running": 10 - done - failed,
                      "succeeded": done, "failed": failed, "attempts": done + failed}], 0)


def test_a_progress_line_counts_ended_tasks_and_names_failures() -> None:
    assert progress_line("primes", _state(4, 1), 12.3) == "primes 12s: calc 5/10 (1 failed)"
    assert progress_line("primes", RunState([], 1), 0) == "primes 0s: no task seen yet, 1 start task(s) not seen yet"


def test_without_a_terminal_a_line_every_few_seconds_when_something_changed(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=80), "primes", line_every_s=5)
    for second, done in [(1, 1), (2, 2), (6, 3), (7, 4), (12, 4), (20, 4), (60, 4), (80, 10)]:
        clock[0] = 100.0 + second
        view.show(_state(done))
    view.close()
    assert out.getvalue().splitlines() == ["primes 6s: calc 3/10", "primes 12s: calc 4/10",
                                           "primes 80s: calc 10/10"], "unchanged at 20s and 60s: no line"


def test_the_summary_fits_80_columns() -> None:
    out = io.StringIO()
    Console(file=out, width=80).print(table(_state(10), "primes: finished in 5.2s"))
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["module", "created", "waiting", "running", "succeeded", "failed", "attempts"]
    assert lines[2].split() == ["calc", "10", "0", "0", "10", "0", "10"]
    assert all(len(line.rstrip()) <= 80 for line in lines)
