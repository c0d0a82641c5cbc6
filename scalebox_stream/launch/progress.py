"""Waiting for a run to finish while showing its progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from rich.console import Console
from rich.live import Live
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
    """The per-module table shown live and as the final summary."""
    t = Table("module", *COLUMNS, title=title)
    for m in state.modules:
        t.add_row(m["module"], *(str(m[c]) for c in COLUMNS))
    return t


def wait_for_run(pg: str, roots: list[str], app: str, check_children: Callable[[], None],
                 timeout_s: float | None, console: Console, poll_s: float = 0.3,
                 watch: Callable[[object], None] | None = None) -> RunState:
    """Poll the projection until the run is finished; `check_children` raises if a child died, `watch`
    (given the run's counts) if the run can never finish."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with psycopg.connect(pg, autocommit=True) as conn, Live(console=console, auto_refresh=False,
                                                           transient=True) as live:
        last_line = ""
        while True:
            state = RunState(*queries.run_progress(conn, roots))
            if console.is_terminal:
                live.update(table(state, f"{app}: running"), refresh=True)
            else:
                line = " ".join(f"{m['module']}:{m['succeeded'] + m['failed']}/{m['created']}" for m in state.modules)
                if line != last_line:
                    console.print(f"progress {line}")
                    last_line = line
            if state.finished:
                return state
            check_children()
            if watch is not None:
                watch((state.unseen_roots, [tuple(m.values()) for m in state.modules]))
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run did not finish within {timeout_s:.0f}s")
            time.sleep(poll_s)
