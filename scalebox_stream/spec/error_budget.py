"""The `error_budget:` module key: stop admitting tasks after too many failures in a time window.

| key | meaning |
| --- | --- |
| `error_budget.max_failures` | failed attempts (failed, timed out or engine error, retried or not), 1..1,000,000 |
| `error_budget.window` | the sliding window: seconds or `'30s'`, `'5m'`, `'1h'`; > 0, at most 30 days |

Once `max_failures` failures fall within `window`, the module's budget trips and stays tripped until
it is resumed (`scalebox_stream.policy.budget`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import parse_duration
from .errors import check_keys
from .limits import MAX_DURATION_S, MAX_ERROR_BUDGET_FAILURES, within_limit


class ErrorBudgetSpec(BaseModel):
    """`error_budget: {max_failures: 10, window: 5m}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_failures: int = Field(ge=1, le=MAX_ERROR_BUDGET_FAILURES)
    window: float = Field(gt=0, le=MAX_DURATION_S)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected a mapping like {max_failures: 10, window: 5m}")
        check_keys(cls, data, ("max_failures", "window"), {"max_errors": "use 'max_failures'"})
        return data

    @field_validator("max_failures", mode="before")
    @classmethod
    def _max_failures(cls, value: Any) -> Any:
        return within_limit(value, MAX_ERROR_BUDGET_FAILURES, "MAX_ERROR_BUDGET_FAILURES")

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)
