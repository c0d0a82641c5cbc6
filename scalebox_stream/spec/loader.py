"""Load an app file: parse it with line numbers (substituting `${VAR}` in its values), flatten it, validate it.

The file is at most `limits.MAX_APP_FILE_BYTES`; see `spec.limits` for every other limit.

Every problem becomes a `SpecIssue` naming the file, the line and the field as written in the file;
all issues found in one pass are raised together as one `SpecError`. What is accepted but ignored (a
Scalebox knob this engine has no use for) becomes a `SpecIssue` in `AppSpec.warnings`, for the CLI to print.

A module whose executor this engine does not have (`podman`, `apptainer`, a `.sif` image) is refused here,
naming the executors it has (`spec.model.ENGINE_EXECUTORS`), rather than when its agent starts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import SpecError, SpecIssue, error_messages
from .files import FileProblem, read_capped
from .limits import MAX_APP_FILE_BYTES
from .model import ENGINE_EXECUTORS, AppSpec
from .normalize import Normalized, normalize_app
from .placement import head_of
from .templating import CLUSTER_DATA_DIR, collect_variables, default_cluster_data_dir, render
from .yamlsrc import Path_, parse_yaml


def load_app(path: Path, env_files: Sequence[Path] = (), environ: Mapping[str, str] | None = None,
             *, allow_outside: bool = False, cascade_env_files: bool = True,
             executors: Collection[str] | None = None) -> AppSpec:
    """Load and validate the app file at `path`; raise SpecError (with file, line, field) if invalid.

    Template variables come from /etc/scalebox/environments, ~/.scalebox/environments,
    <app_dir>/scalebox.env, each of `env_files` in order (each after its more general names when
    `cascade_env_files`: `-e a_b.env` reads `a.env` first), then `environ` (default: os.environ),
    later sources overriding earlier ones. `allow_outside` lets `start_task: FILE:` name files outside
    the app's directory (for a caller whose user asked for it explicitly). `executors`: the executor names
    modules may use (default: the ones this engine has; pass all four to check a file for another machine).
    """
    file = str(path)
    path = Path(path)
    try:
        text = read_capped(path, MAX_APP_FILE_BYTES, what="app file", limit_name="MAX_APP_FILE_BYTES")
    except FileProblem as exc:
        raise SpecError(file, None, "", str(exc)) from None
    source = path.resolve()
    app_dir = source.parent
    variables = collect_variables(app_dir, env_files, environ, cascade_env_files=cascade_env_files)
    return parse_app(text, file=file, app_dir=app_dir, source=source, variables=variables,
                     allow_outside=allow_outside, executors=executors, environ=environ)


def parse_app(text: str, *, file: str, app_dir: Path, source: Path, variables: Mapping[str, str] | None = None,
              allow_outside: bool = False, executors: Collection[str] | None = None,
              environ: Mapping[str, str] | None = None) -> AppSpec:
    """Validate YAML text as an app, substituting `${VAR}` in its values when `variables` are given.

    `CLUSTER_DATA_DIR` is defined when no source defines it (see `templating`)."""
    cluster_data_dir: str | None = None
    if variables is not None:
        variables = dict(variables)
        if CLUSTER_DATA_DIR not in variables:
            base = _base_data_dir(text, file, variables) if "base_data_dir" in text else None
            variables[CLUSTER_DATA_DIR] = base or str(default_cluster_data_dir(environ))
        cluster_data_dir = variables[CLUSTER_DATA_DIR]
    raw, lines = _parse_yaml_tolerating_tabs(text, file, variables)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(file, lines.get(()), "", f"an app file must be a mapping (name:, modules:), got {got}")
    norm = normalize_app(raw)
    issues = [_issue(file, lines, path, message) for path, message in norm.issues]
    warnings = [_issue(file, lines, path, message) for path, message in norm.warnings]
    cluster = norm.data.get("cluster") if isinstance(norm.data.get("cluster"), str) else "local"
    head = head_of(norm.clusters, cluster)
    data = {**norm.data, "app_dir": app_dir, "source": source, "head_host": head, "clusters": norm.clusters}
    if cluster_data_dir:
        data["cluster_data_dir"] = Path(cluster_data_dir).expanduser().absolute()
    context = {"app_dir": app_dir, "allow_outside": allow_outside, "head": head}
    try:
        app = AppSpec.model_validate(data, context=context)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, norm, file, lines))
        raise SpecError.from_issues(issues) from None
    issues.extend(_executor_issues(app, norm, file, lines, ENGINE_EXECUTORS if executors is None else executors))
    if issues:
        raise SpecError.from_issues(issues)
    warnings.extend(_placement_warnings(app, norm, file, lines))
    warnings.extend(_launch_warnings(app, norm, file, lines))
    if app.initial_status != "RUNNING":
        warnings.append(_issue(file, lines, norm.raw_path(("initial_status",)),
                               f"initial_status {app.initial_status} is kept in the model; `scalebox run` starts the "
                               "app at once (a paused start is not yet)"))
    ordered = sorted(warnings, key=lambda w: (w.line or 0, w.field))
    return app.model_copy(update={"warnings": tuple(ordered)})


def _parse_yaml_tolerating_tabs(text: str, file: str, variables: Mapping[str, str] | None) -> tuple[Any, dict]:
    """`parse_yaml`, and if it fails on a tab after `key:` (which YAML allows there but PyYAML refuses, and
    Scalebox's own files hold), parse again with those tabs read as spaces (lines and columns unchanged)."""
    try:
        return parse_yaml(text, file, variables)
    except SpecError as exc:
        if "found character '\\t' that cannot start any token" not in exc.message:
            raise
        fixed = _TAB_AFTER_KEY.sub(lambda m: m.group(1) + " " * len(m.group(2)), text)
        if fixed == text:
            raise
        return parse_yaml(fixed, file, variables)


_TAB_AFTER_KEY = re.compile(r"(?m)^([ \t-]*[A-Za-z_][A-Za-z0-9_.-]*:)(\t+)(?=\S)")


def _base_data_dir(text: str, file: str, variables: Mapping[str, str]) -> str | None:
    """The `base_data_dir` of the app's cluster in the file's `clusters:` (its placeholders filled in), or None.

    Read before the file's placeholders are, so `${CLUSTER_DATA_DIR}` can stand for it."""
    try:
        raw, _ = _parse_yaml_tolerating_tabs(text, file, None)
        cluster = render(str(raw.get("cluster") or "local"), variables, file)
        definition = (raw.get("clusters") or {}).get(cluster) or {}
        value = (definition.get("parameters") or {}).get("base_data_dir")
        return render(str(value), variables, file).strip() or None if value is not None else None
    except (SpecError, AttributeError, TypeError):
        return None  # the full parse reports what is wrong


def _executor_issues(app: AppSpec, norm: Normalized, file: str, lines: dict[Path_, int],
                     available: Collection[str]) -> list[SpecIssue]:
    """A module whose executor this engine does not have, at the key that chose it."""
    out = []
    have = ", ".join(available)
    for name, module in app.modules.items():
        if module.executor in available:
            continue
        base = ("modules", name)
        chosen = next((key for key in ("executor", "launch", "image") if base + (key,) in norm.origin), "")
        why = {"launch": " (chosen by the launch template)", "image": " (chosen by the .sif image)"}.get(chosen, "")
        out.append(_issue(file, lines, norm.raw_path(base + ((chosen,) if chosen else ())),
                          f"{module.executor} is not available on this machine{why}: scalebox-stream has no "
                          f"{module.executor} executor here (executors: {have})"))
    return out


def _placement_warnings(app: AppSpec, norm: Normalized, file: str, lines: dict[Path_, int]) -> list[SpecIssue]:
    """A host list that names hosts other than the head while the file defines no cluster for the app: `scalebox
    run` starts them only if a cluster definition in the Scalebox home names them."""
    out = []
    if app.cluster in app.clusters:
        return out
    for name, module in app.modules.items():
        others = [entry.host for entry in module.placement if not entry.matches(app.head_host)]
        if not others or not module.placement:
            continue
        where = norm.raw_path(("modules", name, "placement"))
        if len(others) == len(module.placement):
            note = (f"no entry names the head ({app.head_host}): an agent on this machine runs "
                    f"{module.slots} slot{'s' if module.slots != 1 else ''}")
        else:
            note = f"the head ({app.head_host}) runs {module.slots} slot{'s' if module.slots != 1 else ''}"
        out.append(_issue(file, lines, where, f"hosts {', '.join(others)}: {note}; other hosts run this module only "
                                              "where a cluster definition ($SCALEBOX_HOME/clusters/) names them or "
                                              "`scalebox agent` is started"))
    return out


def _launch_warnings(app: AppSpec, norm: Normalized, file: str, lines: dict[Path_, int]) -> list[SpecIssue]:
    """The parts of a launch template the engine keeps but does not apply yet."""
    out = []
    for name, module in app.modules.items():
        if module.launch is None or not (unapplied := module.launch.unapplied()):
            continue
        out.append(_issue(file, lines, norm.raw_path(("modules", name, "launch")),
                          f"launch template read ({module.launch.engine}, network {module.network}); not applied "
                          f"yet: {' '.join(unapplied)}"))
    return out


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
