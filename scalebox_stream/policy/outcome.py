"""What happens after an attempt: pure decisions from (module rules, attempt, result)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scalebox_stream.spec.retry_rules import RetryRule, retries_allowed


@dataclass(frozen=True)
class AttemptVerdict:
    """The outcome label of an attempt and whether the task is retried or ends."""

    outcome: str
    retry: bool
    rule: str = ""


def classify(exit_code: int, timed_out: bool, error: str | None) -> str:
    """The outcome label of one attempt."""
    if timed_out:
        return "timed_out"
    if error:
        return "error"
    return "succeeded" if exit_code == 0 else "failed"


def decide(rules: Sequence[RetryRule], attempt: int, exit_code: int, timed_out: bool,
           error: str | None) -> AttemptVerdict:
    """Retry while the matching rule still allows it (attempt n has used n-1 retries)."""
    outcome = classify(exit_code, timed_out, error)
    if outcome == "succeeded":
        return AttemptVerdict(outcome, retry=False)
    if attempt - 1 < retries_allowed(rules, exit_code):
        exact = [r for r in rules if r.exit_code == exit_code]
        rule = exact[0] if exact else next(r for r in rules if r.exit_code is None)
        return AttemptVerdict(outcome, retry=True, rule=str(rule))
    return AttemptVerdict(outcome, retry=False)
