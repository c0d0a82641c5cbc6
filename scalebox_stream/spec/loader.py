"""Load an app file: template it, parse it with line numbers, flatten it, validate it.

Every problem becomes a `SpecIssue` naming the file, the line and the field as written in the file;
all issues found in one pass are raised together as one `SpecError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from .errors import SpecError, SpecIssue, error_messages
from .model import AppSpec
from .normalize import Normalized, normalize_app
from .templating import collect_variables, render
from .yamlsrc import Path_, parse_yaml


def load_app(path: Path, env_files: Sequence[Path] = (), environ: Mapping[str, str] | None = None) -> AppSpec:
    """Load and validate the app file at `path`; raise SpecError (with file, line, field) if invalid.

    Template variables come from /etc/scalebox/environments, ~/.scalebox/environments,
    <app_dir>/scalebox.env, each of `env_files` in order, then `environ` (default: os.environ),
    later sources overriding earlier ones.
    """
    file = str(path)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(file, None, "", "app file not found") from None
    except IsADirectoryError:
        raise SpecError(file, None, "", "is a directory, not an app file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(file, None, "", f"cannot read app file: {exc}") from None
    source = path.resolve()
    app_dir = source.parent
    variables = collect_variables(app_dir, env_files, environ)
    return parse_app(render(text, variables, file), file=file, app_dir=app_dir, source=source)


def parse_app(text: str, *, file: str, app_dir: Path, source: Path) -> AppSpec:
    """Validate already-templated YAML text as an app (no variable substitution here)."""
    raw, lines = parse_yaml(text, file)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(file, lines.get(()), "", f"an app file must be a mapping (name:, modules:), got {got}")
    norm = normalize_app(raw)
    issues = [_issue(file, lines, path, message) for path, message in norm.issues]
    data = {**norm.data, "app_dir": app_dir, "source": source}
    try:
        app = AppSpec.model_validate(data, context={"app_dir": app_dir})
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, norm, file, lines))
        raise SpecError.from_issues(issues) from None
    if issues:
        raise SpecError.from_issues(issues)
    return app


def _validation_issues(exc: ValidationError, norm: Normalized, file: str,
                       lines: dict[Path_, int]) -> list[SpecIssue]:
    """Map pydantic errors (model locs) to issues (raw paths and lines)."""
    return [_issue(file, lines, norm.raw_path(loc), message) for loc, message in error_messages(exc)]


def _issue(file: str, lines: dict[Path_, int], path: Path_, message: str) -> SpecIssue:
    """An issue at `path`, with the line of the longest prefix of it found in the file."""
    line = None
    for size in range(len(path), -1, -1):
        if path[:size] in lines:
            line = lines[path[:size]]
            break
    return SpecIssue(file, line, ".".join(str(p) for p in path), message)
