"""Errors raised while loading an app file: each names the file, the line and the field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one file: where it is (`line` is 1-based) and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(Exception):
    """An invalid app file (or env file). `str()` is `<file>:<line>: <field>: <message>`, one per line.

    `file`, `line`, `field` and `message` describe the first problem (the one with the lowest line);
    `issues` holds all of them.
    """

    def __init__(self, file: str, line: int | None, field: str, message: str,
                 *, issues: Sequence[SpecIssue] | None = None) -> None:
        first = SpecIssue(str(file), line, field, message)
        self.issues: list[SpecIssue] = list(issues) if issues else [first]
        self.file = first.file
        self.line = line
        self.field = field
        self.message = message
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @classmethod
    def from_issues(cls, issues: Iterable[SpecIssue]) -> SpecError:
        """One error listing several issues, sorted by file and line."""
        ordered = sorted(issues, key=lambda i: (i.file, i.line or 0))
        if not ordered:
            raise ValueError("SpecError.from_issues needs at least one issue")
        first = ordered[0]
        return cls(first.file, first.line, first.field, first.message, issues=ordered)


class FieldError(ValueError):
    """Raised inside pydantic validators to point at sub-fields: a list of (relative loc, message).

    The loader appends each relative loc to the loc of the failing validator, so the reported field
    (and line) is the precise one, e.g. `retry_rules.2` rather than `retry_rules`.
    """

    def __init__(self, issues: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(msg for _, msg in self.issues))

    @classmethod
    def at(cls, loc: tuple[str | int, ...], message: str) -> FieldError:
        """A single issue at `loc` (relative to the validated value)."""
        return cls([(loc, message)])


def error_messages(exc: ValidationError) -> list[tuple[Loc, str]]:
    """Pydantic errors as (loc, message), expanding `FieldError`s into their precise sub-locs."""
    out: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            out.extend((loc + sub, message) for sub, message in cause.issues)
        elif error["type"] == "value_error" and cause is not None:
            out.append((loc, str(cause)))
        elif error["type"] == "missing":
            out.append((loc, "required field is missing"))
        else:
            out.append((loc, error["msg"] + _shown_input(error.get("input"))))
    return out


def _shown_input(value: Any) -> str:
    """` (got 'two')` for a short scalar input, else nothing."""
    if isinstance(value, _SCALARS) and len(repr(value)) <= 60:
        return f" (got {value!r})"
    return ""


def check_keys(model: type[BaseModel], data: Any, allowed: Sequence[str],
               hints: dict[str, str] | None = None) -> None:
    """For a mapping validated as `model`: raise FieldError listing each unknown key (with "did you mean")
    together with the problems of the known keys, so that one pass reports everything."""
    if not isinstance(data, dict) or all(key in allowed for key in data):
        return
    problems: list[tuple[Loc, str]] = []
    for key in data:
        if key in allowed:
            continue
        if hints and key in hints:
            problems.append(((key,), f"unknown field {key!r} ({hints[key]})"))
            continue
        close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(allowed)})"
        problems.append(((key,), f"unknown field {key!r}{hint}"))
    try:
        model.model_validate({key: value for key, value in data.items() if key in allowed})
    except ValidationError as exc:
        problems.extend(error_messages(exc))
    raise FieldError(problems)
