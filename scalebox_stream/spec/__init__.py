"""The app spec (`app.yaml`): model, `${VAR}` templating, validation with file:line:field errors."""

from .durations import parse_duration
from .error_budget import ErrorBudgetSpec
from .errors import SpecError, SpecIssue
from .launch import LaunchTemplate
from .loader import load_app, parse_app
from .model import AppSpec, ModuleSpec
from .placement import SlotPlacement
from .retry_rules import RetryRule, parse_rules, retries_allowed
from .retry_spec import BackoffSpec, RetryRuleSpec, RetrySpec, build_retry_policy

__all__ = [
    "AppSpec",
    "BackoffSpec",
    "ErrorBudgetSpec",
    "LaunchTemplate",
    "ModuleSpec",
    "RetryRule",
    "RetryRuleSpec",
    "RetrySpec",
    "SpecError",
    "SlotPlacement",
    "SpecIssue",
    "build_retry_policy",
    "load_app",
    "parse_app",
    "parse_duration",
    "parse_rules",
    "retries_allowed",
]
