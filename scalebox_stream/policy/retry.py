"""The retry policy: which failed attempts are retried, and after how long.

A `RetryPolicy` is built from a module's Scalebox `retry_rules` (`['1:3','2:2','*']`) or from its
structured `retry:` key (see `scalebox_stream.spec.retry_spec`); `decide_retry` is the pure decision.

| rule | meaning |
| --- | --- |
| rules are ordered | the first matching rule decides (Scalebox form: the exact code first, then `*`) |
| `retries: n` | attempt k (1-based) is retried while k <= n, i.e. a task runs at most n + 1 times |
| `max_attempts` | overall cap on runs, whatever the rule says |
| exit code 0 | never retried |
| no matching rule | not retried |
| backoff | delay before attempt k+1: `min(max, initial * factor**(k-1))`, then ± `jitter` fraction |
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .expr import Expr


class ScaleboxRule(Protocol):
    """A Scalebox rule (`spec.retry_rules.RetryRule`): exit code (None for `*`) and retry count."""

    @property
    def exit_code(self) -> int | None: ...

    @property
    def count(self) -> int: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `initial_s * factor**(attempt-1)` capped at `max_s`, ± `jitter` fraction."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.factor < 1 or self.max_s < self.initial_s or not 0 <= self.jitter <= 1:
            raise ValueError(f"bad backoff {self}: need initial >= 0, factor >= 1, max >= initial, "
                             "0 <= jitter <= 1")

    def delay(self, attempt: int, rng_value: float) -> float:
        """The delay after attempt `attempt` (1-based); `rng_value` in [0, 1) picks the jitter."""
        if not 0 <= rng_value < 1:
            raise ValueError(f"rng_value must be in [0, 1), got {rng_value}")
        try:
            base = min(self.max_s, self.initial_s * self.factor ** max(attempt - 1, 0))
        except OverflowError:
            base = self.max_s
        if math.isinf(base):
            base = self.max_s
        return max(0.0, base * (1 + self.jitter * (2 * rng_value - 1)))


@dataclass(frozen=True)
class Rule:
    """One rule: matches `exit_codes` (None: any non-zero code) and `when` (if given); allows `retries`."""

    retries: int
    exit_codes: frozenset[int] | None = None
    when: Expr | None = None
    label: str = ""

    def matches(self, exit_code: int, duration_s: float, attempt: int, timed_out: bool) -> bool:
        """True if both conditions (those given) hold for this attempt."""
        if self.exit_codes is not None and exit_code not in self.exit_codes:
            return False
        facts = {"exit_code": exit_code, "duration": duration_s, "attempt": attempt, "timed_out": timed_out}
        return self.when is None or self.when.matches(facts)


@dataclass(frozen=True)
class RetryPolicy:
    """Ordered rules, an optional overall cap on attempts, and an optional backoff (None: no delay)."""

    rules: tuple[Rule, ...] = ()
    max_attempts: int | None = None
    backoff: Backoff | None = None

    @classmethod
    def from_scalebox(cls, rules: Iterable[ScaleboxRule], *, max_attempts: int | None = None,
                      backoff: Backoff | None = None) -> RetryPolicy:
        """Scalebox `['1:3','2:2','*']`: an exact code wins over the wildcard, whatever the order."""
        rules = list(rules)
        exact = [r for r in rules if r.exit_code is not None]
        wildcard = [r for r in rules if r.exit_code is None]
        converted = [Rule(retries=r.count, exit_codes=frozenset({r.exit_code}), label=str(r)) for r in exact]
        converted += [Rule(retries=r.count, label=str(r)) for r in wildcard]
        return cls(tuple(converted), max_attempts, backoff)

    def first_match(self, exit_code: int, duration_s: float, attempt: int, timed_out: bool) -> Rule | None:
        """The first rule matching a non-zero exit code, or None."""
        if exit_code == 0:
            return None
        return next((r for r in self.rules if r.matches(exit_code, duration_s, attempt, timed_out)), None)


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class RetryDecision:
    """Whether to run attempt n+1, after `delay_s` seconds; the rule that decided and why."""

    retry: bool
    delay_s: float = 0.0
    rule: str = ""
    reason: str = ""


def decide_retry(policy: RetryPolicy, attempt: int, exit_code: int, duration_s: float, timed_out: bool,
                 rng_value: float) -> RetryDecision:
    """Decide after attempt `attempt` (1-based) ended with `exit_code` after `duration_s` seconds.

    `rng_value` in [0, 1) picks the jitter (pass `random.random()`; a constant in tests).
    """
    if not 0 <= rng_value < 1:
        raise ValueError(f"rng_value must be in [0, 1), got {rng_value}")
    if exit_code == 0:
        return RetryDecision(False, reason="exit code 0 is never retried")
    rule = policy.first_match(exit_code, duration_s, attempt, timed_out)
    if rule is None:
        return RetryDecision(False, reason=f"no retry rule matches exit code {exit_code}")
    if attempt > rule.retries:
        return RetryDecision(False, rule=rule.label,
                             reason=f"rule {rule.label} allows {rule.retries} retries; attempt {attempt} was the last")
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return RetryDecision(False, rule=rule.label,
                             reason=f"max_attempts {policy.max_attempts} reached")
    delay = policy.backoff.delay(attempt, rng_value) if policy.backoff else 0.0
    return RetryDecision(True, delay, rule.label,
                         f"exit code {exit_code} matches rule {rule.label}: retry {attempt} of {rule.retries}")
