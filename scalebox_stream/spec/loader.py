"""Load an app file: parse it with line numbers (substituting `${VAR}` in its values), flatten it, validate it.

The file is at most `limits.MAX_APP_FILE_BYTES`; see `spec.limits` for every other limit.

Every problem becomes a `SpecIssue` naming the file, the line and the field as written in the file;
all issues found in one pass are raised together as one `SpecError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from .errors import SpecError, SpecIssue, error_messages
from .files import FileProblem, read_capped
from .limits import MAX_APP_FILE_BYTES
from .model import AppSpec
from .normalize import Normalized, normalize_app
from .templating import collect_variables
from .yamlsrc import Path_, parse_yaml


def load_app(path: Path, env_files: Sequence[Path] = (), environ: Mapping[str, str] | None = None,
             *, allow_outside: bool = False) -> AppSpec:
    """Load and validate the app file at `path`; raise SpecError (with file, line, field) if invalid.

    Template variables come from /etc/scalebox/environments, ~/.scalebox/environments,
    <app_dir>/scalebox.env, each of `env_files` in order, then `environ` (default: os.environ),
    later sources overriding earlier ones. `allow_outside` lets `start_task: FILE:` name files outside
    the app's directory (for a caller whose user asked for it explicitly).
    """
    file = str(path)
    path = Path(path)
    try:
        text = read_capped(path, MAX_APP_FILE_BYTES, what="app file", limit_name="MAX_APP_FILE_BYTES")
    except FileProblem as exc:
        raise SpecError(file, None, "", str(exc)) from None
    source = path.resolve()
    app_dir = source.parent
    variables = collect_variables(app_dir, env_files, environ)
    return parse_app(text, file=file, app_dir=app_dir, source=source, variables=variables,
                     allow_outside=allow_outside)


def parse_app(text: str, *, file: str, app_dir: Path, source: Path, variables: Mapping[str, str] | None = None,
              allow_outside: bool = False) -> AppSpec:
    """Validate YAML text as an app, substituting `${VAR}` in its values when `variables` are given."""
    raw, lines = parse_yaml(text, file, variables)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(file, lines.get(()), "", f"an app file must be a mapping (name:, modules:), got {got}")
    norm = normalize_app(raw)
    issues = [_issue(file, lines, path, message) for path, message in norm.issues]
    data = {**norm.data, "app_dir": app_dir, "source": source}
    try:
        app = AppSpec.model_validate(data, context={"app_dir": app_dir, "allow_outside": allow_outside})
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
