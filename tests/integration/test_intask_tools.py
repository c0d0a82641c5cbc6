"""The in-task tools through real Kafka, PostgreSQL and Docker: a busybox image (no Python, no network) and a
plain process add tasks with `scalebox task add` / `send-message` / `send-job-message`; the children arrive
with their headers, exactly once, and only from a parent that succeeds. Requests that need an answer are
served through the slot's FIFO channel, also inside a busybox container."""

from __future__ import annotations

import json
import uuid

import pytest
from fakes.tools import FakeStateHandler
from pipeline import list_tasks, scalebox, utc_now

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.events import EventCodec, EventStamp
from scalebox_stream.executors import make_executor
from scalebox_stream.spec.loader import load_app

PARENT = r"""
. "$FUNCTIONS" || exit 9
[ "$(get_header "$2" marker)" = m1 ] || exit 8
[ "$(scalebox task get-header marker)" = m1 ] || exit 6
scalebox task get-header no_such_header; [ $? -eq 2 ] || exit 7
scalebox task add -H k=v -H 'q=a "b", {c}' --sink-module child "$1,with {braces}" || exit 3
send-message child "$1-second" || exit 4
send-job-message child "$1-third" || exit 5
[ "$1" = ok ]
"""
CHILD = 'printf "%s|%s" "$1" "$2" > "$WORK_DIR/custom-out.txt"'


def _app(name: str, executor: str) -> str:
    if executor == "docker":
        where, functions = "    image: scalebox/base:busybox\n", "/usr/local/bin/functions.sh"
    else:
        where, functions = "    executor: process\n", "$SBX_FUNCTIONS"
    parent = PARENT.replace('"$FUNCTIONS"', f'"{functions}"')
    return (f"name: {name}\nmodules:\n"
            f"  parent:\n{where}    command: [/bin/sh, -c, {json.dumps(parent)}, sh]\n"
            f"    retry: {{rules: []}}\n"
            f"  child:\n{where}    command: [/bin/sh, -c, {json.dumps(CHILD)}, sh]\n")


@pytest.mark.parametrize("executor", ["docker", "process"])
def test_tools_add_children_exactly_once_and_only_on_success(executor, tmp_path, kafka_bootstrap, pg_dsn, request):
    if executor == "docker":
        request.getfixturevalue("busybox_image")
    app = f"tools-{executor}-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(_app(app, executor))
    since = utc_now()
    result = scalebox(["run", str(tmp_path / "app.yaml"), "--module", "parent", "-H", "marker=m1", "ok", "fail"],
                      kafka_bootstrap, pg_dsn)
    assert result.code != 0, "the failing parent makes the run fail"
    tasks = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    parents = {t["body"]: t for t in tasks if t["module"] == "parent"}
    assert parents["ok"]["exit_code"] == 0, parents["ok"]
    assert parents["fail"]["exit_code"] == 1, parents["fail"]
    children = [t for t in tasks if t["module"] == "child"]
    assert sorted(t["body"] for t in children) == ["ok,with {braces}", "ok-second", "ok-third"]
    assert {t["parent_task_id"] for t in children} == {parents["ok"]["task_id"]}
    seen = {t["body"]: t["custom_out"].split("|", 1) for t in children}
    assert {body for body, _ in seen.values()} == {t["body"] for t in children}
    headers = json.loads(seen["ok,with {braces}"][1])
    assert headers["k"] == "v" and headers["q"] == 'a "b", {c}' and headers["from_module"] == "parent"
    assert all(t["exit_code"] == 0 for t in children)


ROUND_TRIP = r"""
v=$(scalebox semaphore increment-n s1 5) && [ "$v" = 8 ] || exit 11
scalebox semaphore get missing 2>/dev/null; [ $? -eq 2 ] || exit 12
echo 'garbage that is no request' > "$SBX_CHANNEL/requests" || exit 13
printf 'not NUL separated' > "$SBX_CHANNEL/99.req"; mkfifo "$SBX_CHANNEL/99.rep"
echo 99 > "$SBX_CHANNEL/requests"; r=$(cat "$SBX_CHANNEL/99.rep"); case $r in 1*refused*) ;; *) exit 14 ;; esac
v=$(SEMAPHORE_AUTO_CREATE=yes scalebox semaphore increment fresh) && [ "$v" = 1 ] || exit 15
scalebox app set-finished "done: $1" || exit 16
command -v python3 python && exit 17
exit 0
"""


@pytest.mark.usefixtures("busybox_image")
@pytest.mark.parametrize("mode", ["task", "slot"])
def test_requests_round_trip_in_a_busybox_container(mode, tmp_path):
    (tmp_path / "app.yaml").write_text(
        f"name: rt\nmodules:\n  m:\n    image: scalebox/base:busybox\n    container_mode: {mode}\n"
        f"    command: [/bin/sh, -c, {json.dumps(ROUND_TRIP)}, sh]\n")
    spec = load_app(tmp_path / "app.yaml")
    handler = FakeStateHandler({"s1": 3})
    executor = make_executor("docker", container_mode=mode)
    runner = TaskRunner(spec, AgentIdentity("rt", "m", agent_id=f"h-1-{uuid.uuid4().hex[:6]}"), executor,
                        EventCodec(), tmp_path / "work", tool_handler=handler)
    try:
        created = EventStamp("rt", producer="test").task_created(str(uuid.uuid4()), "m", "b1", {}, "sbx.tasks.rt.m")
        report = runner.run(TaskMessage(created, created.payload.topic, 0, 0), 0, lambda _: None)
        finished = EventCodec().decode(report.records[0].value).payload
        assert finished.exit_code == 0, (finished.exit_code, finished.stderr, finished.stdout)
        assert handler.semaphores == {"s1": 8, "fresh": 1}
        assert handler.finished == [("rt", "done: b1")]
        assert {c.task_id for _, _, c in handler.calls} == {created.task_id}
    finally:
        executor.close()
        runner.close()
        runner.remove_slot_work_dirs()
