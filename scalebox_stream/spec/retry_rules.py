"""Scalebox retry rules: `['1:3','2:2','*']` means retry exit code 1 three times, 2 twice, others once.

Each rule is `code[:count]` or `*[:count]`; `count` defaults to 1 (0 means "never retry this code",
useful next to a wildcard). `code` is 1..255. The wildcard matches any non-zero code without a rule
of its own. Accepted as a YAML list (`[1:3, '2:2', '*']`) or as Scalebox's string `"['1:3','2:2','*']"`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import FieldError
from .limits import MAX_RETRIES

_RULE = re.compile(r"(?P<code>\*|[0-9]+)(?::(?P<count>[0-9]+))?")


class RetryRule(BaseModel):
    """Retry a task up to `count` more times when it exits with `exit_code` (None: the `*` wildcard)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exit_code: int | None = Field(default=None, ge=1, le=255)
    count: int = Field(default=1, ge=0, le=MAX_RETRIES)

    def __str__(self) -> str:
        return f"{'*' if self.exit_code is None else self.exit_code}:{self.count}"


def parse_rule(text: str) -> RetryRule:
    """One rule from `code[:count]` / `*[:count]`; ValueError with a short reason otherwise."""
    match = _RULE.fullmatch(text.strip()) if len(text) <= 20 else None
    if match is None:
        raise ValueError(f"bad retry rule {text!r}: expected 'code', 'code:count', '*' or '*:count'")
    code = None if match.group("code") == "*" else int(match.group("code"))
    if code is not None and not 1 <= code <= 255:
        raise ValueError(f"bad retry rule {text!r}: exit code must be 1..255")
    count = int(match.group("count")) if match.group("count") is not None else 1
    if count > MAX_RETRIES:
        raise ValueError(f"bad retry rule {text!r}: at most {MAX_RETRIES} retries (the limit, MAX_RETRIES)")
    return RetryRule(exit_code=code, count=count)


def split_rules_string(text: str) -> list[str]:
    """Scalebox's `"['1:3','2:2','*']"` (brackets and quotes optional) -> `['1:3', '2:2', '*']`."""
    body = text.strip()
    if body.startswith("[") != body.endswith("]"):
        raise ValueError(f"bad retry rules {text!r}: unbalanced brackets")
    if body.startswith("["):
        body = body[1:-1]
    items = [item.strip() for item in body.split(",")]
    if items == [""]:
        return []
    out = []
    for item in items:
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        if not item:
            raise ValueError(f"bad retry rules {text!r}: empty rule")
        out.append(item)
    return out


def parse_rules(value: Any) -> list[RetryRule]:
    """Rules from a list or a Scalebox string. Raises FieldError naming the bad item (by index)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            items: list[Any] = list(split_rules_string(value))
        except ValueError as exc:
            raise FieldError.at((), str(exc)) from None
        item_loc: bool = False  # one string, one line: report on the field itself
    elif isinstance(value, list):
        items, item_loc = value, True
    else:
        raise FieldError.at((), "expected a list of rules like ['1:3', '2:2', '*'] or such a string")
    rules: list[RetryRule] = []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: dict[int | None, int] = {}
    for index, item in enumerate(items):
        loc: tuple[str | int, ...] = (index,) if item_loc else ()
        if isinstance(item, bool) or not isinstance(item, str | int):
            problems.append((loc, f"bad retry rule {item!r}: expected a string like '1:3'"))
            continue
        try:
            rule = parse_rule(str(item))
        except ValueError as exc:
            problems.append((loc, str(exc)))
            continue
        if rule.exit_code in seen:
            what = "'*'" if rule.exit_code is None else f"exit code {rule.exit_code}"
            problems.append((loc, f"duplicate retry rule for {what}"))
            continue
        seen[rule.exit_code] = index
        rules.append(rule)
    if problems:
        raise FieldError(problems)
    return rules


def retries_allowed(rules: Sequence[RetryRule], exit_code: int) -> int:
    """How many retries (beyond the first run) a task exiting with `exit_code` is allowed.

    0 for success; the count of the rule for that exact code; else the wildcard's count; else 0.
    """
    if exit_code == 0:
        return 0
    wildcard = 0
    for rule in rules:
        if rule.exit_code == exit_code:
            return rule.count
        if rule.exit_code is None:
            wildcard = rule.count
    return wildcard
