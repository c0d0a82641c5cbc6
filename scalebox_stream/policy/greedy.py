"""Scalebox's GREEDY slot (`task_min_seconds`): a slot whose attempts keep ending sooner than the module's
minimum is taking tasks faster than they can be real work (an environment that fails every task at once, a
program that returns without doing anything), so it stops taking them. Pure: the caller passes the run time.

Scalebox marks such a slot GREEDY and lets it exit after several attempts in a row; here the agent's module is
suspended with a reason that says so (`scalebox module resume` lifts it).
"""

from __future__ import annotations

GREEDY_STREAK = 3
"""Attempts in a row shorter than `task_min_seconds` that make a slot GREEDY."""


def short_streak(streak: int, run_s: float, min_s: float | None) -> int:
    """The slot's count of attempts in a row that ran less than `min_s` seconds, after one that ran `run_s`
    (always 0 without a minimum)."""
    if not min_s:
        return 0
    return streak + 1 if run_s < min_s else 0


def greedy_reason(slot: int, streak: int, min_s: float) -> str | None:
    """Why the slot is GREEDY, or None while it is not."""
    if streak < GREEDY_STREAK:
        return None
    return (f"GREEDY: slot {slot} ran {streak} attempts in a row in less than task_min_seconds ({min_s:g}s); "
            "`scalebox module resume` lets the module take tasks again")
