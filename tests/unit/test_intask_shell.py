"""The in-task tools as sh programs: run with /bin/sh (dash), busybox sh + busybox awk, and bash, and read back
by the agent's own parser (agent/sink.py), so bodies and headers round-trip exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scalebox_stream.agent.sink import SinkLineError, parse_jsonl_file, read_outputs
from scalebox_stream.intask import BIN_DIR, FUNCTIONS_FILE

MODULES = {"calc", "router", "m"}
BUSYBOX = shutil.which("busybox")


@pytest.fixture(params=["dash", "busybox", "bash"])
def shell(request, tmp_path_factory) -> tuple[list[str], str]:
    """(the shell's argv, a PATH whose awk matches it: busybox's own for busybox)."""
    path = os.environ["PATH"]
    if request.param == "busybox":
        if BUSYBOX is None:
            pytest.skip("no busybox on this machine")
        shim = tmp_path_factory.mktemp("bb")
        for applet in ("awk", "cat", "mkfifo", "rm", "timeout", "tr", "printf"):
            (shim / applet).symlink_to(BUSYBOX)
        return [BUSYBOX, "sh"], f"{shim}:{path}"
    return [shutil.which(request.param) or f"/bin/{request.param}"], path


def _run(shell, tool: str, *args: str, work: Path | None, env: dict[str, str] | None = None):
    argv, path = shell
    full = {"PATH": path, **({"WORK_DIR": str(work)} if work else {}), **(env or {})}
    return subprocess.run([*argv, str(BIN_DIR / tool), *args], env=full, capture_output=True, timeout=20)


def _added(work: Path):
    return parse_jsonl_file((work / "sink-tasks.jsonl").read_text(), MODULES)


TRICKY = ["a,b", "calc,x", '{"json":"body"}', "body,{\"k\":\"v\"}", 'q"uo\\te', "tab\there\nnew line\r",
          "ünïcødé ✓ \x01\x1f", " spaced ", "-"]


def test_task_add_round_trips_any_body_and_its_headers(shell, tmp_path):
    got = _run(shell, "scalebox", "task", "add", "-H", "part_primes=25", "-h", "k=a=b,{c}", "--header=x=\"y\"",
               "--sink-module", "calc", "--to-host", "h1", "--", *TRICKY, work=tmp_path)
    assert got.returncode == 0, got.stderr
    added = _added(tmp_path)
    assert [m.body for m in added] == TRICKY
    assert {m.module for m in added} == {"calc"}
    assert added[0].headers == {"part_primes": "25", "k": "a=b,{c}", "x": '"y"', "to_host": "h1"}


def test_send_message_forms(shell, tmp_path):
    for args in (["1"], ["router", "2,{x}"]):
        assert _run(shell, "send-message", *args, work=tmp_path).returncode == 0
    assert _run(shell, "send-job-message", "m", "3", work=tmp_path).returncode == 0
    assert _run(shell, "scalebox", "task", "add", "--headers", '{"a": 1,\n "b": "c"}', "-H", "b=d", "4",
                work=tmp_path).returncode == 0
    assert [(m.module, m.body, m.headers) for m in _added(tmp_path)] == [
        (None, "1", {}), ("router", "2,{x}", {}), ("m", "3", {}), (None, "4", {"a": "1", "b": "d"})]


def test_a_failing_call_adds_nothing(shell, tmp_path):
    for tool, args in (("scalebox", ["task", "add", "-H", "novalue", "x"]), ("scalebox", ["task", "add", ""]),
                       ("scalebox", ["task", "add", "--bogus", "x"]), ("send-message", ["a", "b", "c"]),
                       ("send-job-message", ["only-body"]), ("scalebox", ["task", "add", "--sink-module"])):
        got = _run(shell, tool, *args, work=tmp_path)
        assert got.returncode == 1 and got.stderr, (tool, args)
    assert not (tmp_path / "sink-tasks.jsonl").exists()
    got = _run(shell, "send-message", "x", work=None)
    assert got.returncode == 1 and b"not inside a task" in got.stderr


def test_task_add_with_a_task_file_and_without_a_body(shell, tmp_path):
    (tmp_path / "mine.txt").write_text("calc,1\n2,{\"h\":\"v\"}\n")
    got = _run(shell, "scalebox", "task", "add", "--task-file", str(tmp_path / "mine.txt"), work=tmp_path)
    assert got.returncode == 0
    assert _run(shell, "scalebox", "task", "add", work=tmp_path).returncode == 0  # Scalebox: send sink-tasks.txt
    names = set(os.listdir(tmp_path))
    assert [(m.module, m.body, m.headers) for m in read_outputs(tmp_path, names, MODULES)] == [
        ("calc", "1", {}), (None, "2", {"h": "v"})]


def test_jsonl_lines_are_checked_like_sink_lines():
    for line, words in (('{"body": ""}', "empty"), ('{"module": "nope", "body": "x"}', "no module"),
                        ('{"body": 1}', "body"), ('{"body": "x", "extra": 1}', "only"), ("not json", "JSON"),
                        ('{"body": "x", "headers": [1]}', "headers"), ('{"body": "' + "x" * 70000 + '"}', "limit")):
        with pytest.raises(SinkLineError, match=words):
            parse_jsonl_file(line, MODULES)
    assert parse_jsonl_file('\n{"body": "x", "headers": [{"a": "1"}, {"a": 2}]}\n', MODULES)[0].headers == {"a": "2"}


def test_messages_txt_is_read_as_the_old_name_of_sink_tasks(tmp_path):
    (tmp_path / "messages.txt").write_text("calc,old\n")
    (tmp_path / "sink-tasks.txt").write_text("new\n")
    (tmp_path / "sink-tasks.jsonl").write_text(json.dumps({"body": "tool"}) + "\n")
    got = read_outputs(tmp_path, set(os.listdir(tmp_path)), MODULES)
    assert [(m.module, m.body) for m in got] == [("calc", "old"), (None, "new"), (None, "tool")]


HEADERS = json.dumps({"sema_name": "s1", "n": 42, "o": {"a": [1, "}"]}, "empty": "", "nul": None,
                      "u": "ü😀 \"q\" \\ \n", "it's": "x'y", "t": True}, separators=(",", ":"))


def _functions(shell, script: str, env: dict[str, str] | None = None) -> str:
    argv, path = shell
    got = subprocess.run([*argv, "-c", f'. "{FUNCTIONS_FILE}"; {script}', "sh", HEADERS],
                         env={"PATH": path, **(env or {})}, capture_output=True, timeout=20)
    assert got.returncode == 0, got.stderr
    return got.stdout.decode()


def test_get_header_falls_back_to_the_upper_case_environment_variable(shell):
    env = {"SEMA_NAME": "from-env", "WAIT_SEMA": "w", "EMPTY": "e"}
    assert _functions(shell, 'get_header "$1" sema_name', env) == "s1\n"
    assert _functions(shell, 'get_header "$1" wait_sema', env) == "w\n"
    assert _functions(shell, 'get_header "$1" empty', env) == "e\n"
    assert _functions(shell, 'get_header "$1" absent_too', env) == "\n"
    assert _functions(shell, 'get_parameter "$1" n', env) == "42\n"


def test_get_json_value_unquotes_strings_and_keeps_json_values(shell):
    assert _functions(shell, 'get_json_value "$1" n') == "42\n"
    assert _functions(shell, 'get_json_value "$1" o') == '{"a":[1,"}"]}\n'
    assert _functions(shell, 'get_json_value "$1" u') == 'ü😀 "q" \\ \n\n'
    assert _functions(shell, 'get_json_value "$1" t') == "true\n"
    assert _functions(shell, 'get_json_value "$1" nul; echo "rc=$?"') == "\nrc=0\n"
    assert _functions(shell, 'get_json_value "$1" none; echo "rc=$?"') == "rc=2\n"
    assert _functions(shell, 'get_json_value "not json" x; echo "rc=$?"') == "rc=1\n"


def test_parse_json_fills_a_map(shell):
    if shell[0][0].endswith("bash"):
        assert _functions(shell, 'k="it\'s"; parse_json "$1" H; echo "${H[sema_name]}|${H[n]}|${H[$k]}|${#H[@]}"') == \
            "s1|42|x'y|8\n"
    else:  # no arrays in a POSIX sh: one variable per key that is a valid name
        assert _functions(shell, 'parse_json "$1" H; echo "$H_sema_name|$H_n|$H_t|$H_nul."') == "s1|42|true|.\n"
