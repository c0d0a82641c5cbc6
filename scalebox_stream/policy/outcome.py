"""What happens after an attempt: pure decisions from (module policy, attempt, result)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .retry import RetryPolicy, ScaleboxRule, decide_retry
from .timeouts import TimeoutSpec, retry_allowed_by_deadline


@dataclass(frozen=True)
class AttemptVerdict:
    """The outcome label of an attempt, whether the task is retried (after `delay_s`) or ends, and why."""

    outcome: str
    retry: bool
    rule: str = ""
    delay_s: float = 0.0
    reason: str = ""


OUTCOMES = ("succeeded", "failed", "timed_out", "error")
"""Every label `classify` gives."""


def classify(exit_code: int, timed_out: bool, error: str | None) -> str:
    """The outcome label of one attempt."""
    if timed_out:
        return "timed_out"
    if error:
        return "error"
    return "succeeded" if exit_code == 0 else "failed"


def decide_attempt(policy: RetryPolicy, attempt: int, exit_code: int, duration_s: float, timed_out: bool,
                   error: str | None, rng_value: float) -> AttemptVerdict:
    """Classify attempt `attempt` (1-based) and apply the retry policy to a non-success."""
    outcome = classify(exit_code, timed_out, error)
    if outcome == "succeeded":
        return AttemptVerdict(outcome, retry=False, reason="succeeded")
    decision = decide_retry(policy, attempt, exit_code, duration_s, timed_out, rng_value)
    return AttemptVerdict(outcome, decision.retry, decision.rule, decision.delay_s, decision.reason)


def decide(rules: Sequence[ScaleboxRule], attempt: int, exit_code: int, timed_out: bool,
           error: str | None) -> AttemptVerdict:
    """Scalebox rules only (no backoff): retry while the matching rule allows it (attempt n used n-1)."""
    return decide_attempt(RetryPolicy.from_scalebox(rules), attempt, exit_code, 0.0, timed_out, error, 0.0)


def within_deadline(verdict: AttemptVerdict, spec_module: TimeoutSpec, created_at_s: float,
                    now_s: float) -> AttemptVerdict:
    """The verdict, with a retry cancelled if it would start at or after the task's deadline."""
    if not verdict.retry or retry_allowed_by_deadline(spec_module, created_at_s, now_s, verdict.delay_s):
        return verdict
    return replace(verdict, retry=False, delay_s=0.0,
                   reason=f"{verdict.reason}; not retried: the task deadline would be passed")
