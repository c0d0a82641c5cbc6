"""Waiting for a run to finish while showing its progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from scalebox_stream.projector import queries

COLUMNS = ("created", "waiting", "running", "succeeded", "failed", "attempts")


@dataclass
class RunState:
    """A snapshot of a run: per-module counts and roots not yet projected."""

    modules: list[dict]
    unseen_roots: int

    @property
    def finished(self) -> bool:
        """Every task of the run is terminal and nothing is in flight."""
        return self.unseen_roots == 0 and bool(self.modules) and all(
            m["waiting"] == 0 and m["running"] == 0 and m["succeeded"] + m["failed"] == m["created"]
            for m in self.modules)

    @property
    def failed(self) -> int:
        """Tasks that ended failed."""
        return sum(m["failed"] for m in self.modules)

    @property
    def succeeded(self) -> int:
        """Tasks that ended succeeded."""
        return sum(m["succeeded"] for m in self.modules)


def table(state: RunState, title: str) -> Table:
    """The per-module table shown as the run's summary: plain columns, title on the left."""
    t = Table("module", title=title, title_justify="left", box=None, pad_edge=False, padding=(0, 1),
              header_style="bold")
    for column in COLUMNS:
        t.add_column(column, justify="right")
    for m in state.modules:
        t.add_row(m["module"], *(str(m[c]) for c in COLUMNS))
    return t


def progress_line(app: str, state: RunState, elapsed_s: float) -> str:
    """One line of progress for a log or a pipe: `primes 12s: calc 4/10 (1 failed), router 1/1`."""
    parts = [f"{m['module']} {m['succeeded'] + m['failed']}/{m['created']}"
             + (f" ({m['failed']} failed)" if m["failed"] else "") for m in state.modules]
    waiting = f", {state.unseen_roots} start task(s) not seen yet" if state.unseen_roots else ""
    return f"{app} {elapsed_s:.0f}s: " + (", ".join(parts) or "no task seen yet") + waiting


class ProgressView:
    """Shows a run's progress on `console`: on a terminal, a live bar per module; elsewhere (a pipe, a CI
    log) a line every `line_every_s` seconds when something changed, and at least every ten of those."""

    def __init__(self, console: Console, app: str, line_every_s: float = 5.0) -> None:
        self.console, self.app, self.every = console, app, line_every_s
        self.started = time.monotonic()
        self.bars: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.last_line, self.last_at = "", self.started
        if console.is_terminal:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]}", style="red"), TimeElapsedColumn(),
                                 console=console, transient=True)
            self.bars.start()

    def show(self, state: RunState) -> None:
        """Show one snapshot."""
        now = time.monotonic()
        if self.bars is not None:
            for m in state.modules:
                if m["module"] not in self.tasks:
                    self.tasks[m["module"]] = self.bars.add_task(m["module"], total=None, failed="")
                self.bars.update(self.tasks[m["module"]], total=m["created"], completed=m["succeeded"] + m["failed"],
                                 failed=f"{m['failed']} failed" if m["failed"] else "")
            return
        line = progress_line(self.app, state, now - self.started)
        changed = line.split(": ", 1)[1] != self.last_line.split(": ", 1)[-1]
        if now - self.last_at >= self.every and (changed or now - self.last_at >= 10 * self.every):
            self.console.print(line, highlight=False)
            self.last_line, self.last_at = line, now

    def close(self) -> None:
        """Take the bars away (the caller prints the summary)."""
        if self.bars is not None:
            self.bars.stop()


def wait_for_run(pg: str, roots: list[str], app: str, check_children: Callable[[], None],
                 timeout_s: float | None, console: Console, poll_s: float = 0.3,
                 watch: Callable[[object], None] | None = None, line_every_s: float = 5.0) -> RunState:
    """Poll the projection until the run is finished, showing its progress (`ProgressView`); `check_children`
    raises if a child died, `watch` (given the run's counts) if the run can never finish."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    view = ProgressView(console, app, line_every_s)
    try:
        with psycopg.connect(pg, autocommit=True) as conn:
            while True:
                state = RunState(*queries.run_progress(conn, roots))
                view.show(state)
                if state.finished:
                    return state
                check_children()
                if watch is not None:
                    watch((state.unseen_roots, [tuple(m.values()) for m in state.modules]))
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run did not finish within {timeout_s:.0f}s")
                time.sleep(poll_s)
    finally:
        view.close()
