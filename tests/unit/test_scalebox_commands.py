"""Scalebox's commands in their pure parts: the app `scalebox run` makes from ./code, the app id output scripts
cut, start lines with headers, a repeated body, to_host placement, and an app's state."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from scalebox_stream.cli.run import choose_app, print_app_id
from scalebox_stream.launch.cli_tasks import (
    NewTask,
    conflict_action,
    parse_items,
    placed,
    placed_groups,
    resolve_conflicts,
)
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.quick_app import (
    AGENT_IMAGE,
    QuickAppError,
    QuickOptions,
    local_env_files,
    quick_app_yaml,
    write_quick_app,
)
from scalebox_stream.launch.results import app_state
from scalebox_stream.launch.run import RunRequest, header_groups
from scalebox_stream.spec import load_app


def _dirs(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "run.sh").write_text("#!/bin/sh\n")
    return root


def test_an_app_from_the_code_directory_runs_the_agent_image_with_the_code_mounted(tmp_path):
    root = _dirs(tmp_path / "hello-scalebox", "code")
    name, text = quick_app_yaml(QuickOptions(), root, {})
    assert name == "hello-scalebox"
    assert yaml.safe_load(text) == {"name": "hello-scalebox", "modules": {"main": {
        "base_image": AGENT_IMAGE, "code_path": str(root / "code"), "slots": ["h0:1"]}}}
    spec = load_app(write_quick_app(tmp_path / "home", name, text))
    module = spec.modules["main"]
    assert (module.executor, module.image, module.code_path, module.command) == (
        "docker", AGENT_IMAGE, root / "code", ["/app/bin/run.sh"])
    assert spec.warnings == ()


def test_mr_code_becomes_the_main_router_and_the_scalebox_variables_are_read(tmp_path):
    root = _dirs(tmp_path / "primes", "code", "mr-code")
    environ = {"_APP_NAME": "p1", "_IMAGE_NAME": "calc:py", "_SLOT_REGEX": "h0:3", "_MR_IMAGE_NAME": "router:1"}
    name, text = quick_app_yaml(QuickOptions(image_name="calc:rust"), root, environ)
    app = yaml.safe_load(text)
    assert name == "p1" and app["parameters"] == {"main_router": "mr-module"}
    assert app["modules"]["main"]["base_image"] == "calc:rust"  # the option wins over _IMAGE_NAME
    assert app["modules"]["main"]["slots"] == ["h0:3"]
    assert app["modules"]["mr-module"] == {"base_image": "router:1", "code_path": str(root / "mr-code"),
                                           "slots": ["h0:1"]}
    spec = load_app(write_quick_app(tmp_path / "home", name, text))
    assert spec.entry_module() == "mr-module" and spec.sinks_of("main") == ["mr-module"]


def test_the_process_executor_runs_the_code_on_this_machine(tmp_path):
    root = _dirs(tmp_path / "w", "src")
    _, text = quick_app_yaml(QuickOptions(code_path=Path("src"), executor="process"), root, {})
    assert yaml.safe_load(text)["modules"]["main"] == {"executor": "process", "command": str(root / "src/run.sh"),
                                                       "slots": ["h0:1"]}


def test_no_code_directory_is_an_error_that_says_what_to_do(tmp_path):
    with pytest.raises(QuickAppError, match="no app.yaml and no code directory"):
        quick_app_yaml(QuickOptions(), tmp_path, {})
    with pytest.raises(QuickAppError, match="code path 'nope' is not a directory"):
        quick_app_yaml(QuickOptions(code_path=Path("nope")), tmp_path, {})


def test_the_app_file_run_chooses(tmp_path):
    home = tmp_path / "home"
    root = _dirs(tmp_path / "w", "code")
    (root / "scalebox.env").write_text("A=1\n")
    quick = choose_app(["1000"], None, (), QuickOptions(), home, root)
    assert (quick.bodies, quick.named) == (["1000"], False)
    assert quick.app_file == home / "apps" / "w" / "app.yaml"
    assert quick.env_files == (root / "scalebox.env",)  # Scalebox reads ./scalebox.env
    named = choose_app(["other.yaml", "x"], None, (), QuickOptions(), home, root)
    assert (named.app_file, named.bodies, named.named) == (Path("other.yaml"), ["x"], True)
    (root / "app.yaml").write_text("name: w\n")
    here = choose_app([], None, (), QuickOptions(), home, root)
    assert (here.app_file, here.env_files, here.named) == (root / "app.yaml", (), False)
    assert local_env_files(root, root / "app.yaml") == ()


def test_scripts_cut_the_app_id_out_of_the_output(capsys):
    print_app_id("app-primes")
    out = capsys.readouterr().out
    cut = subprocess.run("cut -d':' -f2 | tr -d '}'", shell=True, input=out, capture_output=True, text=True)
    assert cut.stdout == "app-primes\n"


def test_start_lines_carry_their_headers():
    items = parse_items(['a,{"part":"1"}', "plain", '{"k":"json body"}', "  "])
    assert items == [(None, "a", {"part": "1"}), (None, "plain", {}), (None, '{"k":"json body"}', {})]
    assert parse_items(["calc,b"], ["calc"]) == [("calc", "b", {})]
    with pytest.raises(OperationError, match="line 2: "):
        parse_items(["ok", 'x,{"bad key":"v"}'])


def test_start_tasks_are_fed_in_runs_of_equal_headers():
    request = RunRequest(Path("a.yaml"), (("m", "1"), ("m", "2"), ("m", "3")), headers={"h": "0"},
                         task_headers=({}, {}, {"p": "x"}))
    assert header_groups(request) == [([("m", "1"), ("m", "2")], {"h": "0"}),
                                      ([("m", "3")], {"h": "0", "p": "x"})]
    plain = RunRequest(Path("a.yaml"), (("m", "1"),))
    assert header_groups(plain) == [([("m", "1")], {})]


def test_a_repeated_body_is_an_error_unless_ignored_overwritten_or_repeatable():
    tasks = [NewTask("m", "a"), NewTask("m", "b"), NewTask("n", "a")]
    with pytest.raises(OperationError, match="module 'm' already has a task with body 'a'") as refused:
        resolve_conflicts(tasks, {("m", "a")}, "error")
    assert refused.value.code == 1
    assert resolve_conflicts(tasks, {("m", "a")}, "ignore") == (tasks[1:], tasks[:1])
    assert resolve_conflicts(tasks, {("m", "a")}, "overwrite") == (tasks, [])
    again = [NewTask("m", "a", {"repeatable": "yes"})]
    assert resolve_conflicts(again, {("m", "a")}, "error") == (again, [])
    twice = [NewTask("m", "x"), NewTask("m", "x")]
    assert resolve_conflicts(twice, set(), "ignore") == (twice[:1], twice[1:])
    assert [conflict_action(v) for v in (None, "", "IGNORE", "Overwrite")] == ["error", "error", "ignore",
                                                                              "overwrite"]
    with pytest.raises(OperationError, match="conflict action 'SKIP'"):
        conflict_action("SKIP")


def test_to_host_places_a_task_of_a_host_bound_module(tmp_path):
    (tmp_path / "app.yaml").write_text("name: a\nmodules:\n  bound: {command: /bin/true, task_dist_mode: HOST-BOUND}\n"
                                       "  free: {command: /bin/true}\n")
    spec = load_app(tmp_path / "app.yaml")
    assert placed(spec, NewTask("bound", "x", {"to_host": "n1"})) == "n1"
    assert placed(spec, NewTask("bound", "x")) is None
    assert placed(spec, NewTask("free", "x", {"to_host": "n1"})) is None
    assert placed(None, NewTask("bound", "x", {"to_host": "n1"})) is None


def test_run_start_tasks_go_to_the_host_their_to_host_names(tmp_path):
    (tmp_path / "app.yaml").write_text("name: a\nmodules:\n  bound: {command: /bin/true, task_dist_mode: HOST-BOUND}\n"
                                       "  free: {command: /bin/true}\n")
    spec = load_app(tmp_path / "app.yaml")
    request = RunRequest(Path("a.yaml"), (("bound", "1"), ("bound", "2"), ("free", "3"), ("bound", "4")),
                         headers={"k": "v"}, task_headers=({"to_host": "n1"}, {"to_host": "n1"}, {"to_host": "n1"},
                                                           {"to_host": "n2"}))
    assert placed_groups(spec, header_groups(request)) == [
        ([("bound", "1"), ("bound", "2")], {"k": "v", "to_host": "n1"}, "n1"),
        ([("free", "3")], {"k": "v", "to_host": "n1"}, None),
        ([("bound", "4")], {"k": "v", "to_host": "n2"}, "n2")]
    assert placed_groups(spec, [([("bound", "1")], {})]) == [([("bound", "1")], {}, None)]


def test_an_app_is_finished_once_a_result_or_run_end_follows_its_deployment():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = t0 + timedelta(seconds=5)
    assert app_state(t0, None, None) == "RUNNING"
    assert app_state(t0, later, None) == "FINISHED"
    assert app_state(t0, None, later) == "FINISHED"
    assert app_state(later, t0, t0) == "RUNNING"  # redeployed after an earlier finish


def test_a_json_start_item_shapes_the_app_made_from_code_and_gives_its_start_task(tmp_path):
    from scalebox_stream.cli.run import take_start_item
    from scalebox_stream.launch.quick_app import shapes_app, start_item, with_start_item

    item = '{"image_name":"calc:2","slot_regex":"h0:3","cluster":"far","start_task":"1000"}'
    args, found = take_start_item([item])
    assert args == ["1000"] and found == {"image_name": "calc:2", "slot_regex": "h0:3", "cluster": "far",
                                          "start_task": "1000"}
    quick = with_start_item(QuickOptions(image_name="given:1"), found)
    assert (quick.image_name, quick.slot_regex, quick.cluster) == ("given:1", "h0:3", "far"), "options win"
    root = _dirs(tmp_path / "primes", "code")
    _, text = quick_app_yaml(quick, root, {})
    app = yaml.safe_load(text)
    assert app["cluster"] == "far" and app["modules"]["main"]["slots"] == ["h0:3"]
    assert shapes_app(found) and not shapes_app({"start_task": "x"})
    assert take_start_item(["a", '{"start_task":"b"}']) == (["a", "b"], {"start_task": "b"})
    assert take_start_item(['{"code_path":"/c"}']) == ([], {"code_path": "/c"})
    for body in ('{"body":"x","image_name":"y"}', '{"k":1}', "{not json", "[1]", "{}", "plain"):
        assert start_item(body) is None, f"{body} stays a task body"


def test_broadcast_headers_are_refused_with_a_way_out():
    from scalebox_stream.agent.sink import SinkLineError, parse_jsonl_line, parse_sink_line
    from scalebox_stream.launch.inputs import tasks_problem

    problem = tasks_problem(["x"], {"host_broadcast": "yes"})
    assert problem.startswith("header 'host_broadcast' (one task per host of the module) is not supported")
    assert "--to-host" in problem
    assert "'slot_broadcast' (one task per slot" in tasks_problem(["x"], {"slot_broadcast": "yes"})
    with pytest.raises(OperationError, match="host_broadcast"):
        parse_items(['x,{"host_broadcast":"yes"}'])
    with pytest.raises(SinkLineError, match="slot_broadcast"):
        parse_sink_line('x,{"slot_broadcast":"1"}', [])
    with pytest.raises(SinkLineError, match="host_broadcast"):
        parse_jsonl_line('{"body":"x","headers":{"host_broadcast":"yes"}}', [])
    assert tasks_problem(["x"], {"to_host": "h1"}) is None


def test_app_run_is_scalebox_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from scalebox_stream.cli.main import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALEBOX_HOME", str(tmp_path / "home"))
    for command in (["app", "run"], ["run"]):
        result = CliRunner().invoke(app, [*command, '{"image_name":"calc:1","start_task":"7"}'])
        assert result.exit_code == 2 and "no app.yaml and no code directory" in result.stderr, result.output
