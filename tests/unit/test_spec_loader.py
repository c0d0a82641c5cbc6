"""Loading app files: valid files, Scalebox compatibility, and errors naming field and line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from scalebox_stream.spec import AppSpec, RetryRule, SpecError, load_app

SPECS = Path(__file__).parent / "specs"
ALL_EXECUTORS = ("process", "docker", "podman", "apptainer")
"""Model-only loads: executors this machine lacks are refused by default (test_spec_scalebox.py)."""


pytestmark = pytest.mark.usefixtures("no_host_env_files")


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None, **options: Any) -> AppSpec:
    """Write `text` as tmp_path/app.yaml and load it."""
    path = tmp_path / "app.yaml"
    path.write_text(text)
    return load_app(path, environ=environ or {}, **options)


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> SpecError:
    """The SpecError raised by loading `text`."""
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, text, environ)
    return info.value


def assert_issue(err: SpecError, line: int, field: str, *words: str) -> None:
    """Some issue of `err` is at `line`, names `field`, and mentions every word."""
    for issue in err.issues:
        if issue.line == line and issue.field == field and all(w in issue.message for w in words):
            assert f"app.yaml:{line}: {field}: " in str(err)
            return
    raise AssertionError(f"no issue at line {line} for {field} with {words}:\n{err}")


def test_minimal() -> None:
    app = load_app(SPECS / "minimal.yaml", environ={})
    assert app.name == "hello" and app.label is None and app.main_router is None
    module = app.modules["hello"]
    assert module.name == "hello" and module.image == "hello-scalebox:latest"
    assert module.executor == "docker" and module.command == ["/app/bin/run.sh"]
    assert module.slots == 1 and module.sink_modules == [] and module.retry_rules == []
    assert module.output_text_size == 65536 and module.text_trunc_mode == "HEAD"
    assert module.task_dist_mode == "DEFAULT" and module.task_max_seconds is None
    assert app.app_dir == SPECS.resolve() and app.source == (SPECS / "minimal.yaml").resolve()
    assert app.entry_module() == "hello" and app.sinks_of("hello") == []


@pytest.fixture
def full_app(tmp_path: Path) -> Path:
    """A copy of specs/full with its script made executable (file modes may not survive checkouts)."""
    target = tmp_path / "full"
    shutil.copytree(SPECS / "full", target)
    (target / "calc" / "run.sh").chmod(0o755)
    return target / "app.yaml"


def test_full(full_app: Path) -> None:
    app = load_app(full_app, environ={"TAG": "rust"}, executors=ALL_EXECUTORS)
    assert app.name == "app-primes-g10" and app.label == "Counting primes"
    assert list(app.modules) == ["my-module", "mr-module", "tail"]
    assert app.main_router == "mr-module"

    calc = app.modules["my-module"]
    assert calc.image == "app-primes/calc:rust"  # the environment beats scalebox.env
    assert calc.executor == "docker" and calc.slots == 2
    assert calc.environments == {"THREADS": "8", "MODE": "fast"}
    assert calc.volumes == ["/data:/data:ro", f"{full_app.parent / 'scratch'}:/scratch"]
    assert calc.task_max_seconds == 600 and calc.output_text_size == 1024 and calc.text_trunc_mode == "TAIL"
    assert calc.task_dist_mode == "HOST-BOUND" and calc.pod_id == "7"
    assert calc.retry_rules == [RetryRule(exit_code=1, count=3), RetryRule(exit_code=2, count=2),
                                RetryRule(exit_code=None, count=1)]

    router = app.modules["mr-module"]
    assert router.executor == "process" and router.image is None
    assert router.command == [str(full_app.parent / "calc" / "run.sh"), "--router"]
    assert router.environments == {"NUM_GROUPS": "10", "PRICE": "$5"}
    assert router.start_task == ["1000", "2000", "3000"]

    tail = app.modules["tail"]
    assert tail.executor == "podman" and tail.command == ["/bin/tail.sh", "--verbose"]
    assert tail.retry_rules == [RetryRule(exit_code=None, count=2), RetryRule(exit_code=124, count=1)]
    assert tail.start_task == ["1000"]

    assert app.entry_module() == "mr-module"
    assert app.sinks_of("my-module") == ["mr-module"]
    assert app.sinks_of("mr-module") == []
    assert app.sinks_of("tail") == ["mr-module"]


def test_entry_module_without_router(tmp_path: Path) -> None:
    app = load_text(tmp_path, """\
name: a
modules:
  first: {image: x}
  second: {image: y, start_task: go, sink_modules: second}
""")
    assert app.entry_module() == "second"
    assert app.sinks_of("second") == ["second"] and app.sinks_of("first") == []


def test_frozen(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m: {image: x}\n")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        app.modules["m"].slots = 3  # type: ignore[misc]


def test_scalebox_aliases_and_ignored_keys(tmp_path: Path) -> None:
    app = load_text(tmp_path, """\
name: a
version: 2
comments: old keys
parameters: {message_router: m}
jobs:
  m:
    base_image: img.sif
    comment: apptainer by default for a .sif image
    cluster: c
    sink_jobs: [m]
    variables: {task_timeout_seconds: 5}
    parameters: {start_message: hi}
""", executors=ALL_EXECUTORS)
    assert app.main_router == "m"
    module = app.modules["m"]
    assert module.executor == "apptainer" and module.image == "img.sif"
    assert module.sink_modules == ["m"] and module.task_max_seconds == 5 and module.start_task == ["hi"]
    assert app.cluster == "local" and app.cluster_of("m") == "c", "a module's cluster places it (Scalebox's too)"


def test_cluster_names_are_checked_and_named_with_their_line(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\ncluster: home\nmodules:\n  m: {image: x}\n  n: {image: x, cluster: far}\n")
    assert (app.cluster_of("m"), app.cluster_of("n")) == ("home", "far")
    with pytest.raises(SpecError, match=r"app.yaml:4: modules.m.cluster: bad cluster name 'a b'"):
        load_text(tmp_path, "name: a\nmodules:\n  m:\n    cluster: a b\n    image: x\n")


def test_executor_singularity_alias(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m: {image: x, executor: Singularity}\n", executors=ALL_EXECUTORS)
    assert app.modules["m"].executor == "apptainer"


def test_environments_map_values_become_text(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n"
                              "    environments: {A: 1, B: yes, C: true, D: , E: 1.5}\n")
    assert app.modules["m"].environments == {"A": "1", "B": "yes", "C": "true", "D": "", "E": "1.5"}


def test_command_string_is_split_like_a_shell(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    command: python3 -c 'print(1)'\n")
    assert app.modules["m"].command == ["python3", "-c", "print(1)"]
    assert app.modules["m"].executor == "process"


def test_absolute_process_command_is_kept(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    command: [/no/such/prog, 1]\n")
    assert app.modules["m"].command == ["/no/such/prog", "1"]


def test_relative_process_command_resolved(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "go.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    command: bin/go.sh x\n")
    assert app.modules["m"].command == [str(script), "x"]


def test_container_command_is_not_resolved(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m: {image: x, command: ./run.sh}\n")
    assert app.modules["m"].command == ["./run.sh"]


def test_start_task_file_lines(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t.txt").write_text("a\n\n  b  \n\nc,{\"k\":\"v\"}\n")
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    start_task: [FILE:tasks/t.txt, z]\n")
    assert app.modules["m"].start_task == ["a", "b", 'c,{"k":"v"}', "z"]


# --- errors: each names the field and the exact line ---------------------------------------------


def test_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "- a\n- b\n")
    assert err.line == 1 and "must be a mapping" in err.message
    assert "must be a mapping" in str(error_of(tmp_path, ""))


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: [x\n    slots: 2\n  n: : :\n")
    assert err.line is not None and err.line >= 4 and "YAML syntax error" in err.message


def test_missing_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, "# comment\nmodules:\n  m: {image: x}\n")
    assert err.field == "name" and err.line == 2 and "missing" in err.message


def test_unknown_field_with_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  calc:\n    image: x\n    slotz: 3\n")
    assert_issue(err, 5, "modules.calc.slotz", "unknown field 'slotz'", "did you mean 'slots'?")


def test_unknown_nested_field(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  calc:\n    image: x\n    parameters:\n      retry_rule: '1'\n")
    assert_issue(err, 6, "modules.calc.parameters.retry_rule", "did you mean 'retry_rules'?")


def test_unknown_app_field(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmain_routr: m\nmodules:\n  m: {image: x}\n")
    assert_issue(err, 2, "main_routr", "did you mean 'main_router'?")


def test_unknown_slot_option_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """Scalebox knobs no longer fail a file (test_spec_scalebox.py has the rest); an unknown slot option is
    ignored with a warning naming the line and field."""
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    arguments:\n      slot_options: x\n")
    assert [str(w) for w in app.warnings] == [
        f"{tmp_path / 'app.yaml'}:6: modules.m.arguments.slot_options: unknown slot option 'x' ignored "
        "(known: slot_on_head, tmpfs_workdir, disable_local_mapping, disable_data_mapping, always_running, "
        "reserved_on_exit, wrap_debug, enable_trace, async_task_creation, with_headers, hide_local_ip)"]


def test_field_given_twice(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    parameters: {start_task: 1}\n"
                             "    start_task: 2\n")
    assert_issue(err, 6, "modules.m.start_task", "given twice", "modules.m.parameters.start_task")


def test_module_without_image_or_command(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  ok: {image: x}\n  calc:\n    slots: 2\n")
    assert_issue(err, 4, "modules.calc", "needs an image or a command")


def test_empty_module(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  calc:\n")
    assert_issue(err, 3, "modules.calc", "needs an image or a command")


def test_container_executor_needs_image(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    command: x\n    executor: docker\n")
    assert_issue(err, 5, "modules.m.executor", "needs an image")


def test_process_executor_needs_command(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    executor: process\n")
    assert_issue(err, 3, "modules.m.command", "needs a command")


def test_bad_executor(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    executor: k8s\n")
    assert_issue(err, 5, "modules.m.executor", "'docker'")


def test_sink_to_unknown_module(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    sink_modules:\n      - m\n      - nope\n")
    assert_issue(err, 7, "modules.m.sink_modules.1", "unknown module 'nope'")


def test_unknown_main_router(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nparameters:\n  main_router: r\nmodules:\n  m: {image: x}\n")
    assert_issue(err, 3, "parameters.main_router", "unknown module 'r'")


def test_no_modules(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules: {}\n")
    assert_issue(err, 2, "modules", "at least one module")


def test_modules_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  - m\n")
    assert_issue(err, 2, "modules", "expected a mapping")


@pytest.mark.parametrize(("value", "words"), [
    ("0", ("greater than or equal to 1",)),
    ("two", ("valid integer", "'two'")),
    ("true", ("boolean",)),
    ("h0:0", ("between 1 and 1024",)),
])
def test_bad_slots(tmp_path: Path, value: str, words: tuple[str, ...]) -> None:
    err = error_of(tmp_path, f"name: a\nmodules:\n  ok: {{image: x}}\n  calc:\n    image: x\n    slots: {value}\n")
    assert_issue(err, 6, "modules.calc.slots", *words)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("task_max_seconds", "0", ("greater than 0",)),
    ("output_text_size", "0", ("greater than 0",)),
    ("output_text_size", str(2**30 + 1), ("less than or equal",)),
    ("text_trunc_mode", "MIDDLE", ("'HEAD' or 'TAIL'",)),
    ("task_dist_mode", "GROUP-BOUND", ("'DEFAULT'",)),
    ("command", "[]", ("must not be empty",)),
    ("command", "\"run 'unbalanced\"", ("cannot split",)),
    ("command", "docker run {{IMG}}", ("unknown placeholder '{{IMG}}'",)),
    ("environments", "X", ("KEY=value",)),
    ("volumes", "/a:/b", ("list",)),
    ("sink_modules", "{a: b}", ("valid list",)),
])
def test_bad_module_values(tmp_path: Path, key: str, value: str, words: tuple[str, ...]) -> None:
    err = error_of(tmp_path, f"name: a\nmodules:\n  m:\n    image: x\n    {key}: {value}\n")
    assert_issue(err, 5, f"modules.m.{key}", *words)


def test_empty_image(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    command: x\n    image: ''\n")
    assert_issue(err, 5, "modules.m.image", "must not be empty")


def test_bad_list_items_point_at_their_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, """\
name: a
modules:
  m:
    image: x
    environments:
      - A=1
      - 1B=2
      - NOEQUALS
    volumes:
      - /a:/a
      - /b:rel
      - /c:/c:rx
      - justone
""")
    assert_issue(err, 7, "modules.m.environments.1", "bad variable name '1B'")
    assert_issue(err, 8, "modules.m.environments.2", "KEY=value")
    assert_issue(err, 11, "modules.m.volumes.1", "must be absolute")
    assert_issue(err, 12, "modules.m.volumes.2", "'ro' or 'rw'")
    assert_issue(err, 13, "modules.m.volumes.3", "src:dst")
    assert err.line == 7 and len(err.issues) == 5


def test_bad_retry_rules_in_list_and_string(tmp_path: Path) -> None:
    err = error_of(tmp_path, """\
name: a
modules:
  m:
    image: x
    retry_rules:
      - 1:3
      - 1
      - 256
  n:
    image: x
    parameters:
      retry_rules: "['2', 'x']"
""")
    assert_issue(err, 7, "modules.m.retry_rules.1", "duplicate", "exit code 1")
    assert_issue(err, 8, "modules.m.retry_rules.2", "1..255")
    assert_issue(err, 12, "modules.n.parameters.retry_rules", "bad retry rule 'x'")


def test_missing_start_task_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    start_task: FILE:none.txt\n")
    assert_issue(err, 5, "modules.m.start_task", "none.txt")


def test_missing_program(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    command:\n      - ./calc/run.sh\n      - x\n")
    assert_issue(err, 5, "modules.m.command.0", "not found", str(tmp_path / "calc" / "run.sh"))


def test_program_not_executable(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o644)
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    command: ./run.sh\n")
    assert_issue(err, 4, "modules.m.command.0", "not executable")


def test_bad_names(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: 'bad name'\nmodules:\n  m.n: {image: x}\n")
    assert_issue(err, 1, "name", "bad app name")
    assert_issue(err, 3, "modules.m.n.name", "bad module name", "no dots")


def test_duplicate_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    slots: 1\n    slots: 2\n")
    assert_issue(err, 6, "modules.m.slots", "duplicate key")


def test_many_issues_collected_in_line_order(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    slotz: 1\n    slots: 0\n"
                             "    text_trunc_mode: x\n")
    assert [i.line for i in err.issues] == [5, 6, 7]
    assert (err.line, err.field) == (5, "modules.m.slotz")
    assert str(err).count("\n") == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_app(tmp_path / "nope.yaml", environ={})
