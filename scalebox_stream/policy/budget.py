"""A module's error budget: trip after `max_failures` failed attempts within a sliding `window`.

| module key | meaning |
| --- | --- |
| `error_budget.max_failures` | failures (attempts ending failed, timed_out or error, retried or not) |
| `error_budget.window` | seconds; only failures newer than `now - window` count |

A tripped budget stays tripped (new tasks are not admitted) until `resume()`; resuming also forgets
the failures seen so far. Pure: the caller passes `now_s` and applies `admits(state)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

FAILURE_OUTCOMES = frozenset({"failed", "timed_out", "error"})


class BudgetSpec(Protocol):
    """A module's `error_budget` (`spec.error_budget.ErrorBudgetSpec`)."""

    @property
    def max_failures(self) -> int: ...

    @property
    def window(self) -> float: ...


@dataclass(frozen=True)
class BudgetState:
    """The failure times still in the window (oldest first), and whether the budget has tripped."""

    failures: tuple[float, ...] = ()
    tripped: bool = False
    tripped_at_s: float | None = None


def admits(state: BudgetState) -> bool:
    """True while the budget has not tripped."""
    return not state.tripped


def step(state: BudgetState, max_failures: int, window_s: float, outcome: str, now_s: float) -> BudgetState:
    """The state after an attempt ended with `outcome` at `now_s`."""
    kept = [t for t in state.failures if now_s - t < window_s]
    if outcome in FAILURE_OUTCOMES:
        kept.append(now_s)
    kept = kept[-max_failures:]  # more than max_failures never matters: bounded memory
    if state.tripped:
        return BudgetState(tuple(kept), True, state.tripped_at_s)
    if len(kept) >= max_failures:
        return BudgetState(tuple(kept), True, now_s)
    return BudgetState(tuple(kept))


@dataclass
class ErrorBudget:
    """The state machine of one module's budget; `state` is an immutable snapshot."""

    max_failures: int
    window_s: float
    state: BudgetState = field(default_factory=BudgetState)

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0:
            raise ValueError(f"bad error budget: max_failures {self.max_failures} >= 1, window {self.window_s} > 0")

    @classmethod
    def from_spec(cls, spec: BudgetSpec) -> ErrorBudget:
        """From a module's `error_budget` (window in seconds)."""
        return cls(spec.max_failures, spec.window)

    def record(self, outcome: str, now_s: float) -> BudgetState:
        """Count an attempt that ended with `outcome` (`succeeded`, `failed`, `timed_out`, `error`)."""
        self.state = step(self.state, self.max_failures, self.window_s, outcome, now_s)
        return self.state

    def resume(self) -> BudgetState:
        """Untrip and forget past failures."""
        self.state = BudgetState()
        return self.state
