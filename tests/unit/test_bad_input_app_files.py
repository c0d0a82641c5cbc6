"""Bad app files, bodies and headers: each is refused with an error naming its line and field (or the limit),
never a traceback, and quickly -- including the ones that used to kill, hang or exhaust the loader."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalebox_stream.cli.app import app as app_cli
from scalebox_stream.spec import SpecError, load_app, templating
from scalebox_stream.spec.limits import (
    MAX_APP_FILE_BYTES,
    MAX_BODY_BYTES,
    MAX_ENV_FILE_BYTES,
    MAX_HEADER_KEY_CHARS,
    MAX_HEADERS_BYTES,
    MAX_MODULES,
    MAX_NAME_CHARS,
    check_body,
    check_headers,
)
from scalebox_stream.spec.names import colliding_topics

HEAD = "name: a\nmodules:\n  m:\n    command: /bin/true\n"
"""An app whose module `m` starts at line 3; the keys of a case's module text start at line 5."""
FAST_S = 2.0
"""Every bad file is refused within this time (the bombs used to take minutes or gigabytes)."""
SMALL_PEAK_BYTES = 64 << 20


pytestmark = pytest.mark.usefixtures("no_host_env_files")


def laughs(levels: int = 9, fan: int = 10) -> str:
    """A "billion laughs" document: each level lists the previous one `fan` times."""
    text = "l0: &l0 [" + ", ".join(["lol"] * fan) + "]\n"
    for level in range(1, levels + 1):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]\n"
    return text


def merge_laughs(levels: int = 30) -> str:
    """Merge keys doubling at each level: `<<: [*m(k-1), *m(k-1)]`."""
    text = "m0: &m0 {a: 1, b: 2}\n"
    for level in range(1, levels + 1):
        text += f"m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: 1}}\n"
    return text


def deep_via_aliases(depth: int = 40) -> str:
    """Nesting within the limit where written, beyond it once the alias is expanded."""
    return ("name: a\nx: &x " + "[" * depth + "1" + "]" * depth + "\n"
            "y: " + "[" * depth + "*x" + "]" * depth + "\nmodules:\n  m: {command: /bin/true}\n")


@dataclass
class Case:
    """One bad app file: its text, the expected line and field (None: the whole file) and message words."""

    id: str
    text: str
    line: int | None
    field: str
    words: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


def module(lines: str) -> str:
    """HEAD plus module keys (first key on line 5)."""
    return HEAD + lines


def container(lines: str) -> str:
    """A module with an image and no command, plus module keys (first key on line 5)."""
    return "name: a\nmodules:\n  m:\n    image: x\n" + lines


def _fifo(directory: Path) -> None:
    os.mkfifo(directory / "tasks.fifo")


def _link_out(directory: Path) -> None:
    outside = directory.parent / "outside.txt"
    outside.write_text("secret\n")
    (directory / "tasks.txt").symlink_to(outside)


def _outside_file(directory: Path) -> None:
    (directory.parent / "outside.txt").write_text("secret\n")


CASES = [
    # numbers: every one has a range
    Case("slots-1e26", module("    slots: 1e26\n"), 5, "modules.m.slots",
         ("must be less than or equal to 1024 (the limit, MAX_SLOTS), got 1e+26",)),
    Case("slots-2000", module("    slots: 2000\n"), 5, "modules.m.slots", ("MAX_SLOTS", "got 2000")),
    Case("task-max-seconds-1e300", module("    task_max_seconds: 1e300\n"), 5, "modules.m.task_max_seconds",
         ("less than or equal to 2592000 (the limit, MAX_DURATION_S)",)),
    Case("task-max-seconds-inf", module("    task_max_seconds: .inf\n"), 5, "modules.m.task_max_seconds",
         ("expected a finite number, got inf",)),
    Case("task-deadline-nan", module("    task_deadline_seconds: .nan\n"), 5, "modules.m.task_deadline_seconds",
         ("expected a finite number, got nan",)),
    Case("queue-timeout-31-days", module(f"    queue_timeout_seconds: {31 * 86400}\n"), 5,
         "modules.m.queue_timeout_seconds", ("MAX_DURATION_S", "got 2678400")),
    Case("host-wait-1e9", module("    host_wait_seconds: 1e9\n"), 5, "modules.m.host_wait_seconds",
         ("MAX_DURATION_S",)),
    Case("output-text-size-1GiB", module("    output_text_size: 1073741824\n"), 5, "modules.m.output_text_size",
         ("less than or equal to 262144 (the limit, MAX_OUTPUT_TEXT_SIZE), got 1073741824",)),
    Case("max-backlog-1e20", module("    max_backlog: 1e20\n"), 5, "modules.m.max_backlog", ("MAX_BACKLOG",)),
    Case("max-tasks-per-host-1e7", module("    max_tasks_per_host: 10000000\n"), 5, "modules.m.max_tasks_per_host",
         ("MAX_TASKS_PER_HOST",)),
    Case("dir-quota-nan", module("    dir_quota_gb: {/data: .nan}\n"), 5, "modules.m.dir_quota_gb",
         ("'/data'", "(the limit, MAX_GB), got nan")),
    Case("free-space-1e12", module("    free_space_gb:\n      /data: 1e12\n"), 5, "modules.m.free_space_gb",
         ("MAX_GB", "got 1000000000000.0")),
    Case("backoff-initial-1e200", module("    retry:\n      backoff: {initial: 1e200}\n"), 6,
         "modules.m.retry.backoff.initial",
         ("a duration must be at most 30 days (2592000 s) (the limit, MAX_DURATION_S), got 1e+200",)),
    Case("backoff-max-text", module("    retry:\n      backoff:\n        max: 9999h\n"), 7,
         "modules.m.retry.backoff.max", ("MAX_DURATION_S", "'9999h'")),
    Case("backoff-factor-inf", module("    retry:\n      backoff:\n        factor: .inf\n"), 7,
         "modules.m.retry.backoff.factor", ("expected a finite number",)),
    Case("backoff-factor-1000", module("    retry:\n      backoff:\n        factor: 1000\n"), 7,
         "modules.m.retry.backoff.factor", ("(the limit, MAX_BACKOFF_FACTOR), got 1000",)),
    Case("max-attempts-1e9", module("    retry:\n      max_attempts: 1e9\n"), 6, "modules.m.retry.max_attempts",
         ("(the limit, MAX_ATTEMPTS), got 1000000000",)),
    Case("rule-retries-5000", module("    retry:\n      rules:\n        - {exit_codes: '*', retries: 5000}\n"), 7,
         "modules.m.retry.rules.0.retries", ("MAX_RETRIES",)),
    Case("retry-rules-count", module("    retry_rules: ['1:3', '2:99999']\n"), 5, "modules.m.retry_rules.1",
         ("bad retry rule '2:99999': at most 1000 retries (the limit, MAX_RETRIES)",)),
    Case("error-budget-failures", module("    error_budget: {max_failures: 1e30, window: 5m}\n"), 5,
         "modules.m.error_budget.max_failures", ("MAX_ERROR_BUDGET_FAILURES",)),
    Case("error-budget-window", module("    error_budget:\n      max_failures: 3\n      window: 1e30\n"), 7,
         "modules.m.error_budget.window", ("MAX_DURATION_S",)),
    Case("integer-5000-digits", module("    slots: " + "9" * 5000 + "\n"), 5, "",
         ("an integer of 5000 digits (at most 100, MAX_INT_DIGITS)",)),
    Case("explicit-int-tag", module("    slots: !!int many\n"), 5, "modules.m.slots", ("cannot read 'many' as int",)),
    Case("bad-timestamp-tag", module("    label: !!timestamp 2024-13-45\n"), 5, "modules.m.label",
         ("cannot read '2024-13-45' as timestamp",)),
    # YAML size, depth and alias expansion
    Case("deep-flow-5000", "name: a\nx: " + "[" * 5000 + "]" * 5000 + "\n", 2, "",
         ("nested more than 64 levels deep (the limit, MAX_YAML_DEPTH)",)),
    Case("deep-block-5000", "name: a\nx:\n" + "- " * 5000 + "1\n", 3, "", ("MAX_YAML_DEPTH",)),
    Case("deep-via-aliases", deep_via_aliases(), 2, "y" + ".0" * 64,
         ("nested more than 64 levels deep once aliases are expanded (the limit, MAX_YAML_DEPTH)",)),
    Case("billion-laughs", laughs(), 5, "",
         ("this value expands to more than 100000 values through aliases (the limit, MAX_YAML_NODES)",)),
    Case("merge-key-laughs", merge_laughs(), 1, "", ("MAX_YAML_NODES",)),
    Case("recursive-alias", "name: a\nx: &x [1, *x]\n", 2, "", ("recursive alias: this value contains itself",)),
    Case("file-over-1MiB", "name: a\n#" + "x" * MAX_APP_FILE_BYTES + "\n", None, "",
         (f"over the limit of {MAX_APP_FILE_BYTES} bytes (MAX_APP_FILE_BYTES)",)),
    Case("nul-byte-in-file", "name: a\nmodules:\n  m: {command: '/bin/\x00true'}\n", 3, "",
         ("unacceptable character #x0000",)),
    Case("not-utf8", "", None, "", ("not valid UTF-8",), files={"app.yaml": b"name: caf\xe9\n"}),
    # ${VAR}: substituted in values, checked like any value
    Case("variable-with-nul", module("    start_task: ${BODY}\n"), 5, "modules.m.start_task",
         ("contains a NUL character",), environ={"BODY": "a\x00b"}),
    Case("variable-not-utf8", module("    image: img:${TAG}\n"), 5, "modules.m.image",
         ("is not valid UTF-8",), environ={"TAG": "v\udce9"}),
    Case("variable-undefined", module("    image: img:${NOPE}\n"), 5, "", ("undefined variable ${NOPE}",)),
    Case("unquoted-placeholder-in-flow", "name: a\nmodules:\n  m: {command: ${CMD}}\n", 3, "",
         ("YAML syntax error", "quote a placeholder: '${VAR}'"), environ={"CMD": "/bin/true"}),
    Case("variable-is-not-yaml", module("    slots: ${N}\n"), 5, "modules.m.slots", ("valid integer",),
         environ={"N": "2\n- 3"}),
    # names that collide as topic names
    Case("module-vs-host-topic", "name: a\nmodules:\n  m: {command: /bin/true}\n  m_host_x: {command: /bin/true}\n",
         4, "modules.m_host_x.name", ("module name 'm_host_x' collides with module 'm'", "sbx.tasks.a.m.host.x")),
    Case("app-name-too-long", "name: " + "a" * (MAX_NAME_CHARS + 1) + "\nmodules:\n  m: {command: /bin/true}\n",
         1, "name", ("MAX_NAME_CHARS",)),
    Case("too-many-modules", "name: a\nmodules:\n" + "".join(f"  m{i}: {{command: /bin/true}}\n"
                                                           for i in range(MAX_MODULES + 1)),
         2, "modules", (f"{MAX_MODULES + 1} modules, over the limit of {MAX_MODULES} (MAX_MODULES)",)),
    # start tasks: bodies and FILE: paths
    Case("start-task-nul", module('    start_task: "a\\0b"\n'), 5, "modules.m.start_task", ("NUL character",)),
    Case("start-task-too-big", module("    start_task: " + "x" * (MAX_BODY_BYTES + 1) + "\n"), 5,
         "modules.m.start_task", (f"over the limit of {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)",)),
    Case("file-absolute", module("    start_task: FILE:/etc/passwd\n"), 5, "modules.m.start_task",
         ("start task file '/etc/passwd' is outside the app directory",)),
    Case("file-dotdot", module("    start_task: [ok, FILE:../outside.txt]\n"), 5, "modules.m.start_task.1",
         ("'../outside.txt' is outside the app directory",), setup=_outside_file),
    Case("file-symlink-out", module("    start_task: FILE:tasks.txt\n"), 5, "modules.m.start_task",
         ("'tasks.txt' is outside the app directory",), setup=_link_out),
    Case("file-fifo", module("    start_task: FILE:tasks.fifo\n"), 5, "modules.m.start_task",
         ("is not a regular file",), setup=_fifo),
    Case("file-line-too-big", module("    start_task: FILE:tasks.txt\n"), 5, "modules.m.start_task",
         ("tasks.txt, line 2: the task body is", "(MAX_BODY_BYTES)"),
         files={"tasks.txt": "ok\n" + "y" * (MAX_BODY_BYTES + 1) + "\n"}),
    Case("file-not-utf8", module("    start_task: FILE:tasks.txt\n"), 5, "modules.m.start_task",
         ("is not valid UTF-8",), files={"tasks.txt": b"ok\n\xff\n"}),
    # Scalebox keys: wrong types and values name the field and the line
    Case("code-path-missing", module("    image: x\n    arguments:\n      code_path: ./nope\n"), 7,
         "modules.m.arguments.code_path", ("code_path './nope' is not a directory",)),
    Case("code-path-number", module("    image: x\n    code_path: 7\n"), 6, "modules.m.code_path",
         ("expected the path of the module's code directory, got 7",)),
    Case("code-path-is-a-file", module("    image: x\n    code_path: run.sh\n"), 6, "modules.m.code_path",
         ("is not a directory",), files={"run.sh": "#!/bin/sh\n"}),
    Case("slots-bad-regex", module("    slots:\n      - h0:1\n      - 'n-[01:2'\n"), 7, "modules.m.slots.1",
         ("host 'n-[01' is not a valid regular expression",)),
    Case("slots-count-word", module("    slots: [h0:two]\n"), 5, "modules.m.slots.0",
         ("the slot count in 'h0:two' must be a whole number >= 1",)),
    Case("slots-count-over", module("    slots: [h0:5000]\n"), 5, "modules.m.slots.0", ("MAX_SLOTS", "got 5000")),
    Case("slots-no-host", module("    slots: [':3']\n"), 5, "modules.m.slots.0", ("no host in ':3'",)),
    Case("slots-entry-number", module("    slots: [2]\n"), 5, "modules.m.slots.0",
         ("expected '<host>[:<count>]', e.g. 'h0:2', got 2",)),
    Case("slots-host-too-long", module("    slots: ['" + "h" * 300 + ":1']\n"), 5, "modules.m.slots.0",
         ("MAX_HOST_PATTERN_CHARS",)),
    Case("slots-too-many-entries", module("    slots: [" + ", ".join(["h0:1"] * 1025) + "]\n"), 5, "modules.m.slots",
         ("1025 host entries, over the limit of 1024 (MAX_SLOT_ENTRIES)",)),
    Case("network-bad", module("    network: public\n"), 5, "modules.m.network", ("'none', 'bridge' or 'host'",)),
    Case("tmpfs-workdir-maybe", module("    tmpfs_workdir: maybe\n"), 5, "modules.m.tmpfs_workdir",
         ("valid boolean",)),
    Case("slot-on-head-maybe", module("    parameters:\n      slot_on_head: maybe\n"), 6,
         "modules.m.parameters.slot_on_head", ("expected yes or no, got 'maybe'",)),
    Case("slot-options-mapping", module("    arguments:\n      slot_options: {a: 1}\n"), 6,
         "modules.m.arguments.slot_options", ("expected comma-separated slot options",)),
    Case("initial-status-bad", "name: a\nparameters:\n  initial_status: STARTED\nmodules:\n  m: {command: /bin/true}\n",
         3, "parameters.initial_status", ("'RUNNING', 'INITIAL' or 'PAUSED'",)),
    Case("clusters-not-a-mapping", "name: a\nclusters: [x]\nmodules:\n  m: {command: /bin/true}\n", 2, "clusters",
         ("expected a mapping of cluster name -> cluster definition",)),
    Case("launch-unknown-placeholder", container("    command: docker run {{ENVS}} {{IMAGES}}\n"), 5,
         "modules.m.command", ("unknown placeholder '{{IMAGES}}'",)),
    Case("launch-no-image", container("    command: docker run {{ENVS}} {{VOLUMES}} myimage\n"), 5,
         "modules.m.command", ("needs {{IMAGE}}",)),
    Case("launch-unknown-engine", container("    command: lxc-start {{IMAGE}}\n"), 5, "modules.m.command",
         ("starts with 'lxc-start'",)),
    Case("launch-bad-network", container("    command: docker run --network=overlay {{IMAGE}}\n"), 5,
         "modules.m.command", ("--network 'overlay'",)),
    Case("slot-expr-bad", container("    command: docker run -e D={~import os~} {{IMAGE}}\n"), 5,
         "modules.m.command", ("bad slot expression {~import os~}",)),
    Case("slot-expr-call", container("    command: docker run -e D={~__import__(1)~} {{IMAGE}}\n"), 5,
         "modules.m.command", ("use n, whole numbers",)),
    Case("slot-expr-div-zero", container("    command: docker run -e D={~n%0~} {{IMAGE}}\n"), 5,
         "modules.m.command", ("division by zero",)),
    Case("slot-expr-too-long", container("    command: docker run -e D={~" + "n+" * 60 + "1~} {{IMAGE}}\n"),
         5, "modules.m.command", ("MAX_SLOT_EXPR_CHARS",)),
    Case("slot-bound", module("    image: x\n    task_dist_mode: SLOT-BOUND\n"), 6, "modules.m.task_dist_mode",
         ("SLOT-BOUND (a to_slot header picks the slot) is not supported",)),
    Case("executor-apptainer", module("    image: x\n    executor: apptainer\n"), 6, "modules.m.executor",
         ("apptainer is not available on this machine", "(executors: process, docker, podman)")),
    Case("executor-sif", module("    image: /images/agent.sif\n"), 5, "modules.m.image",
         ("apptainer is not available on this machine (chosen by the .sif image)",)),
    Case("env-file-too-big", module("    image: x\n"), None, "",
         (f"env file is {MAX_ENV_FILE_BYTES + 1} bytes, over the limit of {MAX_ENV_FILE_BYTES} bytes",),
         files={"scalebox.env": "A=" + "x" * (MAX_ENV_FILE_BYTES - 2) + "\n"}),
]




def write_case(case: Case, tmp_path: Path) -> Path:
    """The case's app directory (tmp_path/app) with app.yaml and its other files."""
    directory = tmp_path / "app"
    directory.mkdir()
    files = {"app.yaml": case.text, **case.files}
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    if case.setup:
        case.setup(directory)
    return directory / "app.yaml"


def load_error(path: Path, environ: dict[str, str]) -> tuple[SpecError, float]:
    """The SpecError of loading `path`, and how long it took."""
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_app(path, environ=environ)
    return info.value, time.monotonic() - started


def test_at_least_thirty_cases() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_app_file_is_refused_with_line_and_field(case: Case, tmp_path: Path) -> None:
    path = write_case(case, tmp_path)
    err, elapsed = load_error(path, case.environ)
    assert elapsed < FAST_S, f"took {elapsed:.2f} s"
    file = str(path) if case.files.get("scalebox.env") is None else str(path.parent / "scalebox.env")
    where = file if case.line is None else f"{file}:{case.line}"
    prefix = f"{where}: {case.field}: " if case.field else f"{where}: "
    matching = [str(issue) for issue in err.issues if str(issue).startswith(prefix)
                and all(word in issue.message for word in case.words)]
    assert matching, f"expected {prefix!r} with {case.words}, got:\n{err}"
    assert "Traceback" not in str(err)


BOMBS = ("billion-laughs", "merge-key-laughs", "deep-flow-5000", "deep-block-5000", "recursive-alias", "file-over-1MiB")


@pytest.mark.parametrize("case", [c for c in CASES if c.id in BOMBS], ids=lambda c: c.id)
def test_bombs_fail_fast_in_little_memory(case: Case, tmp_path: Path) -> None:
    """The files that used to take gigabytes (or the whole stack) fail within 2 s and a few MB."""
    path = write_case(case, tmp_path)
    load_error(path, {})  # warm imports
    tracemalloc.start()
    try:
        load_error(path, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < SMALL_PEAK_BYTES, f"peak {peak >> 20} MiB"
    _, elapsed = load_error(path, {})
    assert elapsed < FAST_S


@pytest.mark.parametrize("case", CASES[::7], ids=lambda c: c.id)
def test_cli_validate_prints_the_error_without_traceback(case: Case, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`scalebox app validate` turns the same files into exit 2 and the file:line: field: message lines."""
    path = write_case(case, tmp_path)
    for key, value in case.environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app_cli, ["validate", str(path)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr and "problem" in result.stderr
    assert all(word in result.stderr for word in case.words)


# --- what the bad inputs above used to break, now right -------------------------------------------


def test_variable_value_is_one_value_and_cannot_add_a_module(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(module("    image: ${IMG}\n    environments: {A: '${IMG}'}\n"))
    evil = "x\n  evil:\n    command: /bin/evil"
    app = load_app(tmp_path / "app.yaml", environ={"IMG": evil})
    assert list(app.modules) == ["m"]
    assert app.modules["m"].image == evil and app.modules["m"].environments == {"A": evil}


def test_plain_placeholder_is_resolved_like_the_text_quoted_stays_text(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(module("    slots: ${N}\n    retry:\n      rules:\n"
                                              "        - exit_codes: ${CODE}\n          retries: 2\n"
                                              "    environments: {Q: '${N}', T: '# ${N} $$'}\n"))
    app = load_app(tmp_path / "app.yaml", environ={"N": "3", "CODE": "7"})
    m = app.modules["m"]
    assert m.slots == 3 and m.retry is not None and m.retry.rules is not None
    assert m.retry.rules[0].exit_codes == [7] and m.environments == {"Q": "3", "T": "# 3 $"}


def test_placeholders_in_comments_are_never_seen(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("# ${UNDEFINED} ${bad thing} ${\n" + module("    image: x  # ${ALSO}\n"))
    assert load_app(tmp_path / "app.yaml", environ={}).modules["m"].image == "x"


def test_start_task_file_lines_split_on_newline_only(tmp_path: Path) -> None:
    (tmp_path / "tasks.txt").write_text("a\x0bb\x85c\u2028d\x1ce\r\n\n  f  \n", encoding="utf-8", newline="")
    (tmp_path / "app.yaml").write_text(module("    start_task: FILE:tasks.txt\n"))
    assert load_app(tmp_path / "app.yaml", environ={}).modules["m"].start_task == ["a\x0bb\x85c\u2028d\x1ce", "f"]


def test_env_file_lines_split_on_newline_only(tmp_path: Path) -> None:
    (tmp_path / "scalebox.env").write_text("A=x\x85B=y\u2028C=z\r\nD=w\n", encoding="utf-8", newline="")
    assert templating.parse_env_file(tmp_path / "scalebox.env") == {"A": "x\x85B=y\u2028C=z", "D": "w"}


def test_start_task_file_outside_is_allowed_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("one\ntwo\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.yaml").write_text(module("    start_task: FILE:../outside.txt\n"))
    with pytest.raises(SpecError, match="outside the app directory"):
        load_app(tmp_path / "app" / "app.yaml", environ={})
    app = load_app(tmp_path / "app" / "app.yaml", environ={}, allow_outside=True)
    assert app.modules["m"].start_task == ["one", "two"]


def test_start_task_from_dev_zero_is_refused_even_when_outside_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(module("    start_task: FILE:/dev/zero\n"))
    started = time.monotonic()
    with pytest.raises(SpecError, match="is not a regular file"):
        load_app(tmp_path / "app.yaml", environ={}, allow_outside=True)
    assert time.monotonic() - started < FAST_S


def test_limits_at_their_edge_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(module(
        "    slots: 1024\n    task_max_seconds: 2592000\n    output_text_size: 262144\n"
        "    retry: {max_attempts: 1000, backoff: {initial: 30d, factor: 100}}\n"
        .replace("30d", "720h")))
    m = load_app(tmp_path / "app.yaml", environ={}).modules["m"]
    assert (m.slots, m.task_max_seconds, m.output_text_size) == (1024, 2592000, 262144)
    assert m.retry is not None and m.retry.backoff is not None and m.retry.backoff.initial == 2592000


# --- bodies and headers given to the CLI ----------------------------------------------------------


@pytest.mark.parametrize(("body", "words"), [
    ("x" * (MAX_BODY_BYTES + 1), (f"{MAX_BODY_BYTES + 1} bytes, over the limit of {MAX_BODY_BYTES} bytes",
                                   "MAX_BODY_BYTES")),
    ("é" * (MAX_BODY_BYTES // 2 + 1), ("over the limit", "MAX_BODY_BYTES")),
    ("1 MB" * (1 << 18), ("over the limit",)),
    ("a\x00b", ("NUL byte (at character 1)",)),
    ("caf\udce9", ("not valid UTF-8 (undecodable byte at character 3)",)),
])
def test_check_body_refuses(body: str, words: tuple[str, ...]) -> None:
    problem = check_body(body)
    assert problem is not None and all(word in problem for word in words), problem


def test_check_body_accepts() -> None:
    assert check_body("x" * MAX_BODY_BYTES) is None
    assert check_body("") is None and check_body('{"k": "v"}\nline two\t\x0b') is None


@pytest.mark.parametrize(("headers", "words"), [
    ({"": "v"}, ("non-empty",)),
    ({"bad key": "v"}, ("bad header key 'bad key'",)),
    ({"k=v": "v"}, ("bad header key",)),
    ({".dot": "v"}, ("not starting with '.'",)),
    ({"k" * (MAX_HEADER_KEY_CHARS + 1): "v"}, (f"over the limit of {MAX_HEADER_KEY_CHARS}",)),
    ({"caf\udce9": "v"}, ("not valid UTF-8",)),
    ({"k": "a\x00b"}, ("header 'k' contains a NUL byte",)),
    ({"k": "v\udcff"}, ("header 'k' is not valid UTF-8",)),
    ({f"k{i}": "v" * 100 for i in range(200)}, (f"over the limit of {MAX_HEADERS_BYTES} bytes (MAX_HEADERS_BYTES)",)),
])
def test_check_headers_refuses(headers: dict[str, str], words: tuple[str, ...]) -> None:
    problem = check_headers(headers)
    assert problem is not None and all(word in problem for word in words), problem


def test_check_headers_accepts() -> None:
    assert check_headers({}) is None
    assert check_headers({"from_module": "calc", "trace.id": "x-1", "K_2": "value with spaces, é"}) is None


def test_colliding_topics_names_both() -> None:
    existing = ["sbx.tasks.col_x.m", "sbx.events"]
    assert colliding_topics(["sbx.tasks.col.x.m", "sbx.tasks.other.m"], existing) == [
        ("sbx.tasks.col.x.m", "sbx.tasks.col_x.m")]
    assert colliding_topics(["sbx.tasks.a.b_c", "sbx.tasks.a_b.c"], []) == [("sbx.tasks.a_b.c", "sbx.tasks.a.b_c")]
    assert colliding_topics(["sbx.tasks.col_x.m"], existing) == []
