"""Long-lived slot containers (`container_mode: slot`), against the real Docker and Podman engines (no mocks):
every test runs on both (the `engine` fixture).

Direct executor calls check the per-task contract (fresh /work, argv verbatim, exit codes, timeouts
that leave nothing running, one container reused per slot, setup failures); one pipeline run through
the real CLI checks setup.sh / teardown.sh run once per slot and that no slot container survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker_fixtures import *  # noqa: F403  (the docker fixtures)
from pipeline import list_tasks, scalebox, utc_now
from podman_fixtures import Engine

from scalebox_stream.executors import ExecRequest, ExecResult, docker_slots, make_executor
from scalebox_stream.executors.docker_slots import DockerSlotExecutor

pytestmark = pytest.mark.integration

INJECTION = "$(touch /tmp/pwned); x"


class Slots:
    """A slot executor plus a helper to run one request in a given slot."""

    def __init__(self, executor: DockerSlotExecutor, image: str, tmp: Path, client: docker.DockerClient) -> None:
        self.executor = executor
        self.client = client
        self.image = image
        self.tmp = tmp
        self.app = f"slots-{uuid.uuid4().hex[:8]}"
        self.started: list[str | None] = []

    def run(self, argv: list[str], slot: int = 0, timeout_s: float | None = None,
            env: dict[str, str] | None = None, volumes: list[str] | None = None) -> tuple[ExecResult, Path]:
        work = self.tmp / "work" / uuid.uuid4().hex[:8]
        work.mkdir(parents=True)
        request = ExecRequest(
            argv=argv, env=env or {}, work_dir=work, name=f"sbx-{self.app}-m-{uuid.uuid4().hex[:6]}-1",
            image=self.image, volumes=volumes or [], timeout_s=timeout_s, slot=slot,
            labels={"scalebox.app": self.app, "scalebox.module": "m", "scalebox.agent": "host-1-abc123",
                    "scalebox.task_id": uuid.uuid4().hex})
        return self.executor.run(request, self.started.append), work

    def sh(self, script: str, *args: str, **kw: object) -> tuple[ExecResult, Path]:
        return self.run(["/bin/sh", "-c", script, "sh", *args], **kw)  # type: ignore[arg-type]

    def processes(self, **kw: object) -> list[str]:
        """The commands running in the slot's container (seen by another exec), minus init and sleep."""
        result, _ = self.sh("ps -o pid,args", **kw)
        assert result.exit_code == 0, result
        lines = result.stdout.decode().splitlines()[1:]
        return [line for line in lines if "sleep 2147483647" not in line and "ps -o" not in line]


def _containers(client: docker.DockerClient, app: str) -> list:  # type: ignore[type-arg]
    return client.containers.list(all=True, filters={"label": [f"scalebox.app={app}", "scalebox.managed=true"]})


@pytest.fixture
def slots(engine: Engine, tmp_path: Path) -> Iterator[Slots]:
    executor = make_executor(engine.name, container_mode="slot")
    assert isinstance(executor, DockerSlotExecutor) and executor.name == engine.name
    helper = Slots(executor, engine.busybox_image, tmp_path, engine.client)
    yield helper
    executor.close()
    assert _containers(engine.client, helper.app) == []


@pytest.mark.parametrize("code", [0, 1, 3, 110])
def test_exit_code_passes_through(slots: Slots, code: int) -> None:
    result, _ = slots.sh(f"exit {code}")
    assert result.exit_code == code and not result.timed_out and result.error is None


def test_stdout_and_stderr_are_separate(slots: Slots) -> None:
    result, _ = slots.sh("echo out; echo err >&2")
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert (result.stdout_total, result.stderr_total) == (4, 4)


def test_argv_is_passed_verbatim_without_a_shell(slots: Slots) -> None:
    result, _ = slots.run(["/bin/echo", INJECTION, '{"k":"v"}'])
    assert result.exit_code == 0 and result.stdout == f'{INJECTION} {{"k":"v"}}\n'.encode()
    check, _ = slots.sh("test ! -e /tmp/pwned")
    assert check.exit_code == 0, "the body was run by a shell"


def test_each_task_sees_an_empty_work_dir_and_its_files_reach_the_attempt_dir(slots: Slots) -> None:
    env = {"TASK_ID": "t1", "MODULE_NAME": "m"}
    for n in range(3):
        result, work = slots.sh('test "$WORK_DIR" = /work && test "$(pwd)" = /work || exit 9; '
                                'n=$(ls -A /work | wc -l); echo $n > count.txt; echo "$1" > sink-tasks.txt; mkdir d; '
                                'echo $TASK_ID > d/f', str(n), env=env)
        assert result.exit_code == 0, result
        assert (work / "count.txt").read_text().strip() == "0"
        assert (work / "sink-tasks.txt").read_text() == f"{n}\n"
        assert (work / "d" / "f").read_text() == "t1\n"


def test_one_container_per_slot_is_reused(slots: Slots) -> None:
    ids = {slot: {slots.sh("true", slot=slot)[0].container_id for _ in range(3)} for slot in (0, 1)}
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]
    assert slots.started == [*[next(iter(ids[0]))] * 3, *[next(iter(ids[1]))] * 3]


def test_timeout_is_124_and_leaves_nothing_running(slots: Slots) -> None:
    first, _ = slots.sh("true")
    result, _ = slots.sh("sleep 300 & sleep 300 & (sleep 300; echo late) ; echo never", timeout_s=1)
    assert result.exit_code == 124 and result.timed_out and result.signal == 9
    assert result.finished_at_us - result.started_at_us < 10_000_000
    assert result.container_id == first.container_id
    assert slots.processes() == []


def test_leftovers_of_a_finished_task_are_killed(slots: Slots) -> None:
    result, _ = slots.sh("sleep 300 >/dev/null 2>&1 & setsid sleep 301 >/dev/null 2>&1 & exit 0")
    assert result.exit_code == 0
    assert slots.processes() == []


def test_missing_program_is_127(slots: Slots) -> None:
    result, _ = slots.run(["/no/such/program"])
    assert result.exit_code == 127 and "no such file" in (result.error or "")
    again, _ = slots.sh("exit 0")
    assert again.exit_code == 0 and again.container_id == result.container_id


def test_non_executable_program_is_126(slots: Slots) -> None:
    result, _ = slots.run(["/etc/passwd"])
    assert result.exit_code == 126 and "permission denied" in (result.error or ""), result
    assert result.stdout == b"" and result.stderr == b""


def test_setup_runs_once_per_slot_and_a_failing_setup_is_125_then_retried(slots: Slots, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # setup.sh writes its log here as the container's non-root user
    (shared / "setup.sh").write_text('#!/bin/sh\necho "setup $SLOT" >> /shared/log\n'
                                     'test -e /shared/fail && { echo "no way" >&2; exit 4; }\nsleep 300 &\n'
                                     'exit 0\n')
    (shared / "setup.sh").chmod(0o755)
    (shared / "fail").touch()
    kw = {"env": {"ACTION_SETUP": "/shared/setup.sh", "SLOT": "0"}, "volumes": [f"{shared}:/shared"]}
    failed, _ = slots.sh("true", **kw)
    assert failed.exit_code == 125 and "setup" in (failed.error or "") and "no way" in (failed.error or "")
    (shared / "fail").unlink()
    runs = [slots.sh("sleep 302 >/dev/null 2>&1 &", **kw)[0] for _ in range(3)]
    assert all(r.exit_code == 0 for r in runs) and len({r.container_id for r in runs}) == 1
    assert runs[0].container_id != failed.container_id
    assert (shared / "log").read_text() == "setup 0\nsetup 0\n"
    left = slots.processes(**kw)
    assert len(left) == 1 and "sleep 300" in left[0], left  # setup's daemon stays, the tasks' do not


def test_abort_kills_running_tasks_and_removes_the_containers(slots: Slots) -> None:
    import threading

    docker_client = slots.client
    slots.sh("true")
    results: list[ExecResult] = []
    thread = threading.Thread(target=lambda: results.append(slots.sh("sleep 300")[0]))
    thread.start()
    while len(slots.started) < 2:
        thread.join(0.05)
    slots.executor.abort()
    thread.join(30)
    assert not thread.is_alive() and results[0].exit_code != 0
    assert _containers(docker_client, slots.app) == []


def test_missing_image_is_125(slots: Slots) -> None:
    slots.image = "scalebox/no-such-image:never"
    result, _ = slots.sh("true")
    assert result.exit_code == 125 and "image not found" in (result.error or "")


def test_without_the_host_cgroup_a_timeout_replaces_the_container(slots: Slots,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback when the agent cannot see the container's processes (not root, remote dockerd)."""
    monkeypatch.setattr(docker_slots.ContainerCgroup, "of_pid", classmethod(lambda cls, *a, **k: None))
    first, _ = slots.sh("true")
    result, _ = slots.sh("sleep 300", timeout_s=1)
    assert result.exit_code == 124 and result.timed_out and result.container_id == first.container_id
    after, _ = slots.sh("true")
    assert after.exit_code == 0 and after.container_id != first.container_id
    assert after.cpu_user_s is None and after.peak_memory_bytes is None


def test_slot_containers_of_a_dead_agent_are_removed(slots: Slots) -> None:
    import socket

    docker_client = slots.client
    labels = {"scalebox.managed": "true", "scalebox.slot": "0", "scalebox.app": slots.app,
              "scalebox.module": "m"}
    dead = docker_client.containers.create(slots.image, ["sleep", "300"], labels={
        **labels, "scalebox.agent": f"{socket.gethostname()}-4194305-dead00"})  # above any pid_max
    alive = docker_client.containers.create(slots.image, ["sleep", "300"], labels={
        **labels, "scalebox.agent": f"{socket.gethostname()}-{os.getpid()}-live00"})
    try:
        result, _ = slots.sh("true")
        assert result.exit_code == 0
        left = {c.id for c in _containers(docker_client, slots.app)}
        assert dead.id not in left and alive.id in left
    finally:
        alive.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            dead.remove(force=True)


def test_cpu_and_memory_are_measured(slots: Slots) -> None:
    result, _ = slots.sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
                         "head -c 8000000 /dev/zero | cat > /dev/null")
    assert result.exit_code == 0
    assert result.cpu_user_s is not None and result.cpu_user_s + (result.cpu_system_s or 0) > 0
    assert result.peak_memory_bytes is None or result.peak_memory_bytes > 0


# ----- through the real pipeline -------------------------------------------------------------------

RUN = """#!/bin/sh
echo "run $1 $HOSTNAME $(ls -A /work | wc -l)" >> /log/events
printf 'task %s' "$1" > /work/custom-out.txt
sleep 1
"""
SETUP = '#!/bin/sh\necho "setup $HOSTNAME $SLOT" >> /log/events\n'
TEARDOWN = '#!/bin/sh\necho "teardown $HOSTNAME $SLOT" >> /log/events\n'


def test_pipeline_setup_and_teardown_once_per_slot(tmp_path: Path, kafka_bootstrap: str, pg_dsn: str,
                                                   engine: Engine) -> None:
    app = f"slots-{uuid.uuid4().hex[:8]}"
    bin_dir, log_dir = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log_dir.mkdir()
    log_dir.chmod(0o777)  # the module's non-root user appends to /log/events
    for name, text in (("run.sh", RUN), ("setup.sh", SETUP), ("teardown.sh", TEARDOWN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  work:\n    image: {engine.busybox_image}\n    executor: {engine.name}\n"
        "    container_mode: slot\n"
        "    slots: 2\n    volumes: ['./bin:/app/bin:ro', './log:/log']\n")
    since = utc_now()
    result = scalebox(["run", str(tmp_path / "app.yaml"), *map(str, range(1, 7))], kafka_bootstrap, pg_dsn)
    assert result.code == 0, result.stderr

    events = [line.split() for line in (log_dir / "events").read_text().splitlines()]
    setups = {e[1]: e[2] for e in events if e[0] == "setup"}
    teardowns = [e[1] for e in events if e[0] == "teardown"]
    runs = [e for e in events if e[0] == "run"]
    assert len(setups) == 2 and sorted(setups.values()) == ["0", "1"], events
    assert sorted(teardowns) == sorted(setups) and len(teardowns) == 2, events
    assert sorted(e[1] for e in runs) == [str(n) for n in range(1, 7)], events
    assert {e[2] for e in runs} <= set(setups) and all(e[3] == "0" for e in runs), events
    assert len([e for e in events if e[0] != "run"]) == 4

    tasks = list_tasks(kafka_bootstrap, pg_dsn, app, since=since)
    assert sorted(t["body"] for t in tasks) == [str(n) for n in range(1, 7)]
    shown = [json.loads(scalebox(["task", "show", t["task_id"], "--json"], kafka_bootstrap, pg_dsn).stdout)
             for t in tasks]
    attempts = [s["attempts_detail"][0] for s in shown]
    assert {a["custom_out"] for a in attempts} == {f"task {n}" for n in range(1, 7)}
    by_slot: dict[int, set[str]] = {}
    for a in attempts:
        by_slot.setdefault(a["slot"], set()).add(a["container_id"])
    assert sorted(by_slot) == [0, 1] and all(len(ids) == 1 for ids in by_slot.values()), by_slot
    assert {a["container_id"][:12] for a in attempts} == set(setups)  # $HOSTNAME is the short id
    assert _containers(engine.client, app) == []
