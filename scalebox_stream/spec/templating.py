"""`${VAR}` templating of app files, and the layered env files that define the variables.

Substitution happens after YAML parsing, inside each string value (`yamlsrc.parse_yaml`), so a variable's
value is always one value: it can never add keys, modules or YAML syntax. Placeholders in YAML comments
are never seen. Syntax: `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty) and `$$` for a
literal `$`. A `$` followed by anything else is left alone.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import SpecError, SpecIssue
from .files import FileProblem, read_capped
from .limits import MAX_ENV_FILE_BYTES

SYSTEM_ENV_FILE = Path("/etc/scalebox/environments")
USER_ENV_FILE_NAME = ".scalebox/environments"
APP_ENV_FILE_NAME = "scalebox.env"

_TOKEN = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}\n]*)\}|(?P<open>\{))")
_PLACEHOLDER = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env_file(path: Path) -> dict[str, str]:
    """Read `KEY=value` lines (`#` comments, blank lines, optional `export ` and quotes).

    `KEY=` declares KEY with an empty value. An unquoted value loses a trailing ` # comment`.
    """
    try:
        text = read_capped(path, MAX_ENV_FILE_BYTES, what="env file", limit_name="MAX_ENV_FILE_BYTES")
    except FileProblem as exc:
        raise SpecError(str(path), None, "", str(exc)) from None
    values: dict[str, str] = {}
    issues: list[SpecIssue] = []
    for number, raw in enumerate(text.split("\n"), start=1):  # "\n" only: not \x0b, \x85, \u2028...
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            issues.append(SpecIssue(str(path), number, "", f"expected KEY=value, got {raw.strip()!r}"))
            continue
        if not _ENV_KEY.fullmatch(key):
            issues.append(SpecIssue(str(path), number, key, "not a valid variable name"))
            continue
        values[key] = _unquote(value.strip())
    if issues:
        raise SpecError.from_issues(issues)
    return values


def _unquote(value: str) -> str:
    """Strip matching outer quotes, or a trailing ` # comment` from an unquoted value."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    comment = re.search(r"\s#", value)
    return value[: comment.start()].rstrip() if comment else value


def env_file_layers(app_dir: Path, env_files: Sequence[Path] = ()) -> list[tuple[Path, bool]]:
    """The env files to read, lowest precedence first, each with whether it must exist."""
    layers = [
        (SYSTEM_ENV_FILE, False),
        (Path.home() / USER_ENV_FILE_NAME, False),
        (app_dir / APP_ENV_FILE_NAME, False),
    ]
    layers.extend((Path(f), True) for f in env_files)
    return layers


def collect_variables(app_dir: Path, env_files: Sequence[Path] = (),
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Merge the layered env files, then the process environment (highest precedence)."""
    variables: dict[str, str] = {}
    issues: list[SpecIssue] = []
    for path, required in env_file_layers(app_dir, env_files):
        if not path.is_file():
            if required:
                issues.append(SpecIssue(str(path), None, "", "env file not found"))
            continue
        try:
            variables.update(parse_env_file(path))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError.from_issues(issues)
    variables.update(os.environ if environ is None else environ)
    return variables


def render(text: str, variables: Mapping[str, str], file: str, first_line: int = 1) -> str:
    """Substitute placeholders in `text` (one value, whose first line is `first_line` of `file`); raise one
    SpecError listing every undefined variable or malformed placeholder.

    On lines that start with `#` an undefined or malformed placeholder is left as it is.
    """
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    issues: list[SpecIssue] = []

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset) + first_line - 1

    def in_comment(offset: int) -> bool:
        start = line_starts[bisect.bisect_right(line_starts, offset) - 1]
        return text[start:offset].lstrip().startswith("#")

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        token = match.group(0)
        body = match.group("body")
        placeholder = _PLACEHOLDER.fullmatch(body) if body is not None else None
        if placeholder is None:
            if not in_comment(match.start()):
                what = "unterminated '${'" if match.group("open") else f"malformed placeholder {token!r}"
                issues.append(SpecIssue(file, line_of(match.start()), "", f"{what} (write $$ for a literal $)"))
            return token
        name, default = placeholder.group("name"), placeholder.group("default")
        value = variables.get(name)
        if default is not None and not value:
            return default
        if value is None:
            if not in_comment(match.start()):
                issues.append(SpecIssue(
                    file, line_of(match.start()), "",
                    f"undefined variable ${{{name}}} (define it in {APP_ENV_FILE_NAME}, "
                    "an --env-file or the environment, or write ${" + name + ":-default})"))
            return token
        return value

    rendered = _TOKEN.sub(replace, text)
    if issues:
        raise SpecError.from_issues(issues)
    return rendered
