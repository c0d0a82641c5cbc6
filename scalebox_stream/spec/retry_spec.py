"""The structured `retry:` module key, and the `RetryPolicy` built from it or from `retry_rules`.

```yaml
retry:
  max_attempts: 5                      # overall cap on runs, counting the first one
  backoff: {initial: 1s, factor: 2, max: 60s, jitter: 0.1}
  rules:                               # ordered; the first match decides
    - exit_codes: [1, 14]              # a list, a single code, or '*' (any non-zero code)
      retries: 3
    - when: "exit_code == 2 and duration < 5"
      retries: 2
    - exit_codes: '*'
      retries: 1
```

| key | meaning | default |
| --- | --- | --- |
| `max_attempts` | overall cap on runs of a task (first run included), 1..1,000 | no cap |
| `backoff.initial` | delay before the 2nd run; seconds or `'500ms'`, `'2s'`, `'1m'`, `'1h'` (<= 30 days) | `1s` |
| `backoff.factor` | multiplier per further retry, 1..100 | `2` |
| `backoff.max` | cap of the delay (before jitter) | `60s` (or `initial` if larger) |
| `backoff.jitter` | the delay varies by ± this fraction, 0..1 | `0` |
| `rules[].exit_codes` | exit codes (1..255) the rule matches; `'*'` = any non-zero code | any code |
| `rules[].when` | an expression over `exit_code`, `duration` (s), `attempt`, `timed_out` | true |
| `rules[].retries` | retries allowed (beyond the first run) when this rule matches, 0..1,000; 0 = never retry | `1` |

A rule needs `exit_codes` or `when` (with both, both must hold). `retry.rules` and Scalebox's
`retry_rules` may not both be given; `max_attempts` and `backoff` also apply to `retry_rules`. Without
a `backoff` key, structured rules use the default backoff and Scalebox rules retry at once;
`backoff: null` means "retry at once".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scalebox_stream.policy.expr import ExprError, compile_expr
from scalebox_stream.policy.retry import Backoff, RetryPolicy, Rule

from .durations import parse_duration
from .errors import FieldError, check_keys
from .limits import MAX_ATTEMPTS, MAX_BACKOFF_FACTOR, MAX_DURATION_S, MAX_RETRIES, within_limit
from .retry_rules import RetryRule

DEFAULT_MAX_DELAY_S = 60.0
_RULE_HINTS = {"max": "use 'retries'", "count": "use 'retries'", "exit_code": "use 'exit_codes'",
               "if": "use 'when'", "expression": "use 'when'"}


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


class BackoffSpec(BaseModel):
    """`retry.backoff`: exponential backoff, durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial: float = Field(default=1.0, ge=0, le=MAX_DURATION_S)
    factor: float = Field(default=2.0, ge=1, le=MAX_BACKOFF_FACTOR, allow_inf_nan=False)
    max: float | None = Field(default=None, ge=0, le=MAX_DURATION_S)
    jitter: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        check_keys(cls, data, ("initial", "factor", "max", "jitter"), {"cap": "use 'max'", "duration": "use 'initial'"})
        return data

    @field_validator("initial", "max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("factor", mode="before")
    @classmethod
    def _factor(cls, value: Any) -> Any:
        return within_limit(value, MAX_BACKOFF_FACTOR, "MAX_BACKOFF_FACTOR")

    @field_validator("jitter", mode="before")
    @classmethod
    def _jitter(cls, value: Any) -> Any:
        return _no_bool(value)

    @model_validator(mode="after")
    def _check_max(self) -> BackoffSpec:
        if self.max is not None and self.max < self.initial:
            raise FieldError.at(("max",), f"max ({self.max:g}s) must not be less than initial ({self.initial:g}s)")
        return self

    def to_policy(self) -> Backoff:
        """The policy's Backoff (default max: 60 s, or `initial` if larger)."""
        cap = self.max if self.max is not None else max(DEFAULT_MAX_DELAY_S, self.initial)
        return Backoff(self.initial, self.factor, cap, self.jitter)


class RetryRuleSpec(BaseModel):
    """One entry of `retry.rules`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exit_codes: list[int] | Literal["*"] | None = None
    when: str | None = None
    retries: int = Field(default=1, ge=0, le=MAX_RETRIES)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a rule like {{exit_codes: [1], retries: 3}}, got {data!r} "
                             "(Scalebox rules such as '1:3' go under retry_rules)")
        check_keys(cls, data, ("exit_codes", "when", "retries"), _RULE_HINTS)
        return data

    @field_validator("exit_codes", mode="before")
    @classmethod
    def _exit_codes(cls, value: Any) -> Any:
        """A code, a list of codes (1..255, no duplicates) or '*'."""
        if value is None or value == "*":
            return value
        items, listed = (value, True) if isinstance(value, list) else ([value], False)
        if not items:
            raise ValueError("expected at least one exit code (or '*')")
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[int] = set()
        for index, code in enumerate(items):
            loc: tuple[str | int, ...] = (index,) if listed else ()
            if code == "*":
                problems.append((loc, "'*' stands alone: write exit_codes: '*'"))
            elif isinstance(code, bool) or not isinstance(code, int):
                problems.append((loc, f"expected an exit code 1..255 or '*', got {code!r}"))
            elif code == 0:
                problems.append((loc, "exit code 0 is success and is never retried"))
            elif not 1 <= code <= 255:
                problems.append((loc, f"exit code must be 1..255, got {code}"))
            elif code in seen:
                problems.append((loc, f"exit code {code} is listed twice"))
            else:
                seen.add(code)
        if problems:
            raise FieldError(problems)
        return list(items)

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected an expression string such as \"exit_code == 2\", got {value!r}")
        try:
            return compile_expr(value).text
        except ExprError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> Any:
        return within_limit(value, MAX_RETRIES, "MAX_RETRIES")

    @model_validator(mode="after")
    def _needs_condition(self) -> RetryRuleSpec:
        if self.exit_codes is None and self.when is None:
            raise FieldError.at((), "a rule needs exit_codes or when")
        return self

    def to_policy(self, index: int) -> Rule:
        """The policy's Rule, labelled `rules.<index> (<condition>)`."""
        codes = None if self.exit_codes in (None, "*") else frozenset(self.exit_codes)
        parts = []
        if self.exit_codes is not None:
            shown = "*" if self.exit_codes == "*" else ", ".join(str(c) for c in self.exit_codes)
            parts.append(f"exit_codes {shown}")
        if self.when is not None:
            parts.append(f"when {self.when}")
        return Rule(retries=self.retries, exit_codes=codes,
                    when=compile_expr(self.when) if self.when is not None else None,
                    label=f"rules.{index} ({'; '.join(parts)})")


class RetrySpec(BaseModel):
    """The module key `retry:`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    backoff: BackoffSpec | None = None
    rules: list[RetryRuleSpec] | None = None

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected a mapping with max_attempts, backoff and rules")
        check_keys(cls, data, ("max_attempts", "backoff", "rules"),
                   {"retry_rules": "use 'rules'", "max_retries": "use 'max_attempts' (runs, first one included)"})
        return data

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _max_attempts(cls, value: Any) -> Any:
        return within_limit(value, MAX_ATTEMPTS, "MAX_ATTEMPTS")

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, list):
            raise ValueError("expected a list of rules")
        return value

    def backoff_policy(self, default: Backoff | None) -> Backoff | None:
        """The given backoff; `default` when the key is absent; None for `backoff: null`."""
        if self.backoff is not None:
            return self.backoff.to_policy()
        return None if "backoff" in self.model_fields_set else default


def build_retry_policy(retry: RetrySpec | None, retry_rules: Sequence[RetryRule]) -> RetryPolicy:
    """The module's RetryPolicy from `retry.rules` or Scalebox `retry_rules` (+ `retry`'s cap and backoff)."""
    if retry is not None and retry.rules is not None:
        rules = tuple(rule.to_policy(index) for index, rule in enumerate(retry.rules))
        return RetryPolicy(rules, retry.max_attempts, retry.backoff_policy(Backoff()))
    if retry is None:
        return RetryPolicy.from_scalebox(retry_rules)
    return RetryPolicy.from_scalebox(retry_rules, max_attempts=retry.max_attempts,
                                     backoff=retry.backoff_policy(None))
