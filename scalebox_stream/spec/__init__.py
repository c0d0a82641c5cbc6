"""The app spec (`app.yaml`): model, `${VAR}` templating, validation with file:line:field errors."""

from .durations import parse_duration
from .error_budget import ErrorBudgetSpec
from .errors import SpecError, SpecIssue
from .loader import load_app, parse_app
from .model import AppSpec, ModuleSpec
from .retry_rules import RetryRule, parse_rules, retries_allowed
from .retry_spec import BackoffSpec, RetryRuleSpec, RetrySpec, build_retry_policy

__all__ = [
    "AppSpec",
    "BackoffSpec",
    "ErrorBudgetSpec",
    "ModuleSpec",
    "RetryRule",
    "RetryRuleSpec",
    "RetrySpec",
    "SpecError",
    "SpecIssue",
    "build_retry_policy",
    "load_app",
    "parse_app",
    "parse_duration",
    "parse_rules",
    "retries_allowed",
]
