"""The app spec (`app.yaml`): model, `${VAR}` templating, validation with file:line:field errors."""

from .errors import SpecError, SpecIssue
from .loader import load_app, parse_app
from .model import AppSpec, ModuleSpec
from .retry_rules import RetryRule, parse_rules, retries_allowed

__all__ = [
    "AppSpec",
    "ModuleSpec",
    "RetryRule",
    "SpecError",
    "SpecIssue",
    "load_app",
    "parse_app",
    "parse_rules",
    "retries_allowed",
]
