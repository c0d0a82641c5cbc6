"""`${VAR}` templating of app files, and the layered env files that define the variables.

Substitution happens after YAML parsing, inside each string value (`yamlsrc.parse_yaml`), so a variable's
value is always one value: it can never add keys, modules or YAML syntax. Placeholders in YAML comments
are never seen. Syntax: `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty) and `$$` for a
literal `$`. A `$` followed by anything else is left alone.

Env files given by the user cascade as Scalebox's `-e` does: `-e p419_48nodes_1266932744.env` reads
`p419.env`, then `p419_48nodes.env`, then `p419_48nodes_1266932744.env` (each from the named file's
directory; the shorter ones only if they exist), later files overriding earlier ones. `KEY=` declares KEY
with an empty value, so `${KEY}` is then the empty string rather than an undefined variable.

`CLUSTER_DATA_DIR` needs no definition: when no source defines it, it is the cluster data directory
(`default_cluster_data_dir`, or the `base_data_dir` of the app's cluster in the app file's `clusters:`).
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import SpecError, SpecIssue
from .files import FileProblem, read_capped
from .limits import MAX_ENV_CASCADE, MAX_ENV_FILE_BYTES

SYSTEM_ENV_FILE = Path("/etc/scalebox/environments")
USER_ENV_FILE_NAME = ".scalebox/environments"
APP_ENV_FILE_NAME = "scalebox.env"
CLUSTER_DATA_DIR = "CLUSTER_DATA_DIR"
CLUSTER_DATA_DIR_NAME = "cluster-data"

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


def cascade(path: Path) -> list[Path]:
    """`dir/a_b_c.env` -> [dir/a.env, dir/a_b.env, dir/a_b_c.env]: the most general first, the named file
    last (at most MAX_ENV_CASCADE files: the most specific ones). A name without `_` or `.env` is itself."""
    path = Path(path)
    if path.suffix != ".env" or "_" not in path.stem:
        return [path]
    parts = path.stem.split("_")
    names = ["_".join(parts[:size]) for size in range(1, len(parts) + 1) if all(parts[:size])]
    if not names or names[-1] != path.stem:
        return [path]
    return [path.with_name(name + ".env") for name in names[-MAX_ENV_CASCADE:]]


def env_file_layers(app_dir: Path, env_files: Sequence[Path] = (), *,
                    cascade_env_files: bool = True) -> list[tuple[Path, bool]]:
    """The env files to read, lowest precedence first, each with whether it must exist.

    With `cascade_env_files`, each of `env_files` is preceded by its more general names (`cascade`),
    which are read only if they exist.
    """
    layers = [
        (SYSTEM_ENV_FILE, False),
        (Path.home() / USER_ENV_FILE_NAME, False),
        (app_dir / APP_ENV_FILE_NAME, False),
    ]
    for name in env_files:
        chain = cascade(Path(name)) if cascade_env_files else [Path(name)]
        layers.extend((path, path == chain[-1]) for path in chain)
    return layers


def default_cluster_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$SCALEBOX_HOME/cluster-data` (default `~/.scalebox/cluster-data`): the cluster data directory when
    neither `CLUSTER_DATA_DIR` nor a `clusters:` `base_data_dir` names one. Not created here."""
    env = os.environ if environ is None else environ
    home = env.get("SCALEBOX_HOME") or "~/.scalebox"
    return Path(home).expanduser().absolute() / CLUSTER_DATA_DIR_NAME


def collect_variables(app_dir: Path, env_files: Sequence[Path] = (),
                      environ: Mapping[str, str] | None = None, *,
                      cascade_env_files: bool = True) -> dict[str, str]:
    """Merge the layered env files, then the process environment (highest precedence)."""
    variables: dict[str, str] = {}
    issues: list[SpecIssue] = []
    for path, required in env_file_layers(app_dir, env_files, cascade_env_files=cascade_env_files):
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
