"""Errors raised while loading an app file: each names the file, the line and the field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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
