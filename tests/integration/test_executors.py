"""Real runs of the process, docker and podman executors (no mocks): one contract, the same test bodies.

Docker cases need a running dockerd, Podman cases a Podman API service (skipped without one, failed under
CI=true); the local busybox images are built on demand with .ci/build-images.sh (and copied to Podman).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docker_fixtures import *  # noqa: F403  (the docker fixtures)
from podman_fixtures import Engine

from scalebox_stream.executors import ExecRequest, ExecResult, make_executor, output
from scalebox_stream.executors.base import Executor

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PRIMES = REPO / "examples" / "primes"
INJECTION = "$(touch /tmp/pwned); x"


@dataclass
class Runner:
    """One executor plus what it needs to run a shell snippet the same way on both engines."""

    executor: Executor
    image: str | None
    tmp: Path
    labels: dict[str, str] = field(default_factory=lambda: {"scalebox.test": uuid.uuid4().hex[:12]})
    started: list[str | None] = field(default_factory=list)
    engine: Engine | None = None
    """The container engine (None: the process executor)."""

    @property
    def kind(self) -> str:
        return self.executor.name

    @property
    def client(self) -> Any:
        """The engine's Docker SDK client."""
        assert self.engine is not None
        return self.engine.client

    def run(
        self,
        argv: list[str],
        timeout_s: float | None = None,
        env: dict[str, str] | None = None,
        image: str | None = None,
        name: str | None = None,
    ) -> tuple[ExecResult, Path]:
        work = self.tmp / uuid.uuid4().hex[:8]
        work.mkdir()
        request = ExecRequest(
            argv=argv,
            env=env or {},
            work_dir=work,
            name=name or f"sbx-test-{uuid.uuid4().hex[:12]}",
            image=image or self.image,
            timeout_s=timeout_s,
            labels=self.labels,
        )
        return self.executor.run(request, self.started.append), work

    def sh(self, script: str, *args: str, **kw: object) -> tuple[ExecResult, Path]:
        return self.run(["/bin/sh", "-c", script, "sh", *args], **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["process", "docker", "podman"])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    engine = None
    if request.param != "process":
        client = request.getfixturevalue(f"{request.param}_client")
        request.getfixturevalue({"docker": "busybox_image", "podman": "podman_images"}[request.param])
        engine = Engine(request.param, client)
    executor = make_executor(request.param)
    yield Runner(executor, engine.busybox_image if engine else None, tmp_path, engine=engine)
    executor.close()


@pytest.mark.parametrize("code", [0, 1, 3, 110])
def test_exit_code_passes_through(runner: Runner, code: int) -> None:
    result, _ = runner.sh(f"exit {code}")
    assert result.exit_code == code
    assert not result.timed_out and result.error is None
    assert result.finished_at_us >= result.started_at_us > 0
    assert len(runner.started) == 1
    assert (runner.started[0] is not None) == (runner.engine is not None)


def test_stdout_and_stderr_are_separate(runner: Runner) -> None:
    result, _ = runner.sh("echo to-out; echo to-err >&2; echo more-out")
    assert result.stdout == b"to-out\nmore-out\n"
    assert result.stderr == b"to-err\n"


def test_body_is_passed_verbatim_without_a_shell(runner: Runner) -> None:
    Path("/tmp/pwned").unlink(missing_ok=True)
    script = 'printf "%s" "$1" > "$WORK_DIR/arg1"; if [ -e /tmp/pwned ]; then echo exists; else echo absent; fi'
    result, work = runner.sh(script, INJECTION, '{"k":"v"}')
    assert result.exit_code == 0, result
    assert (work / "arg1").read_text() == INJECTION
    assert result.stdout == b"absent\n"
    assert not Path("/tmp/pwned").exists()


def test_environment_and_work_dir(runner: Runner) -> None:
    result, work = runner.sh('echo "$MY_VAR" > "$WORK_DIR/out.txt"; pwd', env={"MY_VAR": "hello"})
    assert result.exit_code == 0, result
    assert (work / "out.txt").read_text() == "hello\n"
    expected_cwd = "/work" if runner.engine else str(work.resolve())
    assert result.stdout.decode().strip() == expected_cwd


def _live_group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that are not zombies."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _wait_until(predicate, timeout_s: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_timeout_returns_124(runner: Runner) -> None:
    t0 = time.monotonic()
    result, work = runner.sh('echo $$ > "$WORK_DIR/pid"; sleep 30 & sleep 20; echo never', timeout_s=2)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 124 and result.timed_out, result
    assert 1.9 <= elapsed < 6, elapsed
    assert b"never" not in result.stdout
    if runner.kind == "process":
        pgid = int((work / "pid").read_text())
        assert _wait_until(lambda: not _live_group_members(pgid)), _live_group_members(pgid)
    else:
        label = f"scalebox.test={runner.labels['scalebox.test']}"
        assert runner.client.containers.list(all=True, filters={"label": label}) == []


def test_file_written_to_work_dir_is_visible(runner: Runner) -> None:
    result, work = runner.sh('mkdir -p "$WORK_DIR/sub"; echo data > "$WORK_DIR/sub/file.txt"')
    assert result.exit_code == 0, result
    assert (work / "sub" / "file.txt").read_text() == "data\n"


def test_resources_are_reported(runner: Runner) -> None:
    result, _ = runner.sh("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
    assert result.exit_code == 0, result
    cgroup_v1 = Path("/sys/fs/cgroup/cpuacct").is_dir() and os.geteuid() == 0
    if runner.kind == "process" or cgroup_v1:
        assert result.cpu_user_s is not None and result.cpu_system_s is not None
        assert result.cpu_user_s + result.cpu_system_s > 0.01
    if runner.engine and cgroup_v1:
        assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 0


def test_large_output_is_capped(runner: Runner) -> None:
    runner.executor.max_output_bytes = 1000  # type: ignore[attr-defined]
    result, _ = runner.sh("i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done; echo end")
    assert result.exit_code == 0
    assert result.stdout.startswith(b"line-0\n")
    assert result.stdout.endswith(b"line-19999\nend\n")
    assert b"bytes omitted" in result.stdout and len(result.stdout) < 1100


def test_primes_example(runner: Runner) -> None:
    """Calc counts each of app-primes' ranges of N=1000 under this executor. (The router's split, which now
    keeps its sum in shared state and so needs an agent's in-task tools, is run end to end in test_primes.)"""
    bodies = [f"{start:09d}_{start + 99:09d}" for start in range(1, 1000, 100)]
    if runner.engine:
        calc, image = ["/app/bin/run.sh"], runner.engine.primes_image
    else:
        calc, image = [str(PRIMES / "calc" / "run.sh")], None
    counts = []
    for body in bodies:
        result, work = runner.run([*calc, body, "{}"], image=image)
        assert result.exit_code == 0, result
        counts.append(int((work / "custom-out.txt").read_text()))
    assert counts == [25, 21, 16, 16, 17, 14, 16, 14, 15, 14]
    bad, _ = runner.run([*calc, INJECTION, "{}"], image=image)
    assert bad.exit_code == 110 and b"invalid body" in bad.stderr
    assert not Path("/tmp/pwned").exists()


# --- process executor only -------------------------------------------------------------------------


@pytest.fixture
def process_runner(tmp_path: Path) -> Runner:
    return Runner(make_executor("process"), None, tmp_path)


def test_process_missing_program_is_127(process_runner: Runner) -> None:
    result, _ = process_runner.run(["/nonexistent/program", "body"])
    assert result.exit_code == 127 and result.error


def test_process_non_executable_is_126(process_runner: Runner, tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result, _ = process_runner.run([str(script)])
    assert result.exit_code == 126 and result.error


def test_process_killed_by_signal(process_runner: Runner) -> None:
    result, _ = process_runner.sh("kill -9 $$")
    assert result.signal == 9 and result.exit_code == 128 + 9 and not result.timed_out


def test_process_timeout_escalates_to_sigkill(process_runner: Runner) -> None:
    t0 = time.monotonic()
    result, work = process_runner.sh('trap "" TERM; echo $$ > "$WORK_DIR/pid"; while :; do sleep 1; done', timeout_s=1)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 124 and result.timed_out and result.signal == 9, result
    assert 2.9 <= elapsed < 6, elapsed
    pgid = int((work / "pid").read_text())
    assert _wait_until(lambda: not _live_group_members(pgid))


def test_process_output_larger_than_a_pipe_is_read_while_it_runs(process_runner: Runner) -> None:
    """5 MiB on each stream: the program would block on full pipes if they were read only after its exit."""
    process_runner.executor.max_output_bytes = 4096  # type: ignore[attr-defined]
    script = "head -c 5242880 /dev/zero | tr '\\0' a; echo; head -c 5242880 /dev/zero | tr '\\0' b >&2; echo end"
    result, _ = process_runner.sh(script, timeout_s=20)
    assert result.exit_code == 0 and not result.timed_out, result
    assert (result.stdout_total, result.stderr_total) == (5242880 + 1 + 4, 5242880)
    assert result.stdout.startswith(b"a" * 2048) and result.stdout.endswith(b"a\nend\n")
    assert result.stderr.startswith(b"b" * 2048) and result.stderr.endswith(b"b" * 2048)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "exit-checks"])
def test_process_that_leaves_its_output_open_does_not_hold_the_task(
        process_runner: Runner, monkeypatch: pytest.MonkeyPatch, pidfd: bool) -> None:
    """A process escaped from the task's group keeps stdout open: the task still ends with its program."""
    if not pidfd:
        monkeypatch.setattr(output, "_open_pidfd", lambda pid: None)
    t0 = time.monotonic()
    result, work = process_runner.sh('setsid sleep 30 & echo $! > "$WORK_DIR/escaped"; echo done; echo oops >&2')
    elapsed = time.monotonic() - t0
    try:
        assert result.exit_code == 0 and result.stdout == b"done\n" and result.stderr == b"oops\n", result
        assert elapsed < 2, elapsed
    finally:
        os.kill(int((work / "escaped").read_text()), 9)


def test_process_output_is_complete_when_it_closes_the_streams_early(process_runner: Runner) -> None:
    result, _ = process_runner.sh("echo before; exec >&- 2>&-; sleep 0.3; exit 4")
    assert result.exit_code == 4 and result.stdout == b"before\n" and result.stderr == b""


# --- container executors only (docker, podman) ------------------------------------------------------


@pytest.fixture
def container_runner(engine: Engine, tmp_path: Path) -> Iterator[Runner]:
    executor = make_executor(engine.name)
    yield Runner(executor, engine.busybox_image, tmp_path, engine=engine)
    executor.close()


def test_container_missing_image_is_125(container_runner: Runner) -> None:
    result, _ = container_runner.run(["true"], image="scalebox-test/no-such-image:never")
    assert result.exit_code == 125 and result.error and "no-such-image" in result.error
    assert container_runner.started == []


def test_container_body_does_not_create_file_in_container(container_runner: Runner) -> None:
    script = 'echo "$1" >/dev/null; ls /tmp'
    result, _ = container_runner.sh(script, INJECTION)
    assert result.exit_code == 0 and b"pwned" not in result.stdout


def test_container_leftover_container_with_same_name_is_replaced(container_runner: Runner) -> None:
    docker_client = container_runner.client
    name = f"sbx-test-{uuid.uuid4().hex[:12]}"
    docker_client.containers.create(
        container_runner.image, ["sleep", "60"], name=name, labels={"scalebox.managed": "true"}
    )
    result, _ = container_runner.sh("echo fresh", name=name)
    assert result.exit_code == 0 and result.stdout == b"fresh\n", result
    assert docker_client.containers.list(all=True, filters={"name": f"^{name}$"}) == []


def test_container_reap_orphans(container_runner: Runner) -> None:
    docker_client = container_runner.client
    labels = {"scalebox.managed": "true", "scalebox.agent": uuid.uuid4().hex[:8]}
    names = [f"sbx-orphan-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        docker_client.containers.run(
            container_runner.image, ["sleep", "60"], name=name, labels=labels, detach=True, network_mode="none"
        )
    other = docker_client.containers.create(container_runner.image, ["true"], labels={"scalebox.managed": "true"})
    try:
        removed = container_runner.executor.reap_orphans(  # type: ignore[attr-defined]
            {"scalebox.agent": labels["scalebox.agent"]})
        assert sorted(removed) == sorted(names)
        assert (
            docker_client.containers.list(all=True, filters={"label": f"scalebox.agent={labels['scalebox.agent']}"})
            == []
        )
        other.reload()  # not ours: still there
    finally:
        other.remove(force=True)


@pytest.mark.parametrize("name", ["docker", "podman"])
def test_container_unreachable_engine_is_125(tmp_path: Path, name: str) -> None:
    """Needs no engine: one that does not answer is an executor error, not an exception."""
    import docker

    from scalebox_stream.executors.docker import DockerExecutor
    from scalebox_stream.executors.podman import PodmanExecutor

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-{name}.sock", version="1.41")
    executor = DockerExecutor(client=client) if name == "docker" else PodmanExecutor(client=client)
    runner = Runner(executor, "scalebox/base:busybox", tmp_path)
    result, _ = runner.run(["true"])
    assert result.exit_code == 125 and result.error and result.error.startswith(f"{name}:")
    assert runner.started == []
