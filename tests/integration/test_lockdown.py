"""Locked-down modules against the real Docker engine, Podman, Kafka and PostgreSQL (no mocks).

A default module container (Docker's and Podman's; rootless Podman's through test_podman_rootless.py) runs as a
non-root user that cannot gain privileges and has no capabilities; a fork bomb in one (Docker's and rootful
Podman's) is stopped by its pids limit while another slot of the same agent keeps running tasks; `/` and the
Docker socket are refused as volumes unless the allow-list names them; a `setsid` grandchild of a
process-executor task dies with the task's timeout; a module's secret reaches the task (under Docker, rootful
Podman and the process executor) and nothing else.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cluster import Cluster
from docker_fixtures import *  # noqa: F403  (the docker fixtures)
from leak_search import assert_no_leak, in_files

from scalebox_stream.executors import ExecRequest, ExecResult, make_executor
from scalebox_stream.executors.lockdown import DEFAULT_PIDS, ContainerPolicy
from scalebox_stream.executors.process import ProcessExecutor

pytestmark = pytest.mark.integration

IMAGE = "scalebox/base:busybox"
CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


def _run(mode: str, argv: list[str], tmp_path: Path, policy: ContainerPolicy | None = None,
         volumes: list[str] | None = None, timeout_s: float | None = 60,
         engine: str = "docker") -> tuple[ExecResult, Path]:
    """One attempt in a fresh executor of `engine` and `mode` (task or slot), closed afterwards."""
    executor = make_executor(engine, mode)
    work = tmp_path / "work" / uuid.uuid4().hex[:8]
    work.mkdir(parents=True)
    app = f"lock-{uuid.uuid4().hex[:8]}"
    request = ExecRequest(argv=argv, env={}, work_dir=work, name=f"sbx-{app}-m-{uuid.uuid4().hex[:6]}-1",
                          image=IMAGE, volumes=volumes or [], timeout_s=timeout_s,
                          labels={"scalebox.app": app, "scalebox.module": "m", "scalebox.agent": "host-1-abc123",
                                  "scalebox.task_id": uuid.uuid4().hex},
                          policy=policy or ContainerPolicy())
    try:
        return executor.run(request, lambda _: None), work
    finally:
        executor.close()


@pytest.mark.parametrize("mode", ["task", "slot"])
@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_a_default_container_is_unprivileged(tmp_path, mode, engine_name, request):
    request.getfixturevalue("podman_images" if engine_name == "podman" else "busybox_image")
    script = ("id -u; id -g; grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd):' /proc/self/status; "
              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max 2>/dev/null || echo none; "
              "echo written > /work/out.txt")
    result, work = _run(mode, ["/bin/sh", "-c", script], tmp_path, engine=engine_name)
    assert result.exit_code == 0, result
    lines = result.stdout.decode().split("\n")
    assert lines[0] != "0" and lines[1] != "0"
    fields = dict(line.split(":\t") for line in lines[2:6])
    assert fields["NoNewPrivs"] == "1"
    assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == int(fields["CapBnd"], 16) == 0
    # Rootless Podman on cgroup v1 gives a container no cgroup, hence no pids limit (docs/podman.md).
    no_cgroup = engine_name == "podman" and os.geteuid() != 0 and not CGROUP_V2
    assert lines[6] == ("none" if no_cgroup else str(DEFAULT_PIDS))
    assert (work / "out.txt").read_text() == "written\n"  # the work dir is the container user's


@pytest.mark.usefixtures("busybox_image")
def test_limits_capabilities_and_a_read_only_root_come_from_the_policy(tmp_path):
    policy = ContainerPolicy(user="0:0", cap_add=("CHOWN",), pids=64, memory_bytes=64 << 20, cpus=0.5,
                             read_only_rootfs=True)
    script = ("id -u; grep '^CapEff:' /proc/self/status; cat /sys/fs/cgroup/pids/pids.max; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; touch /etc/x 2>/dev/null && echo rootfs-rw; "
              "touch /tmp/x && echo tmp-rw")
    result, _ = _run("task", ["/bin/sh", "-c", script], tmp_path, policy)
    assert result.exit_code == 0, result
    uid, _, caps, pids, memory, *rest = result.stdout.decode().split()
    assert uid == "0" and caps == "0000000000000001"  # root, yet with CAP_CHOWN (bit 0) only
    assert (pids, int(memory)) == ("64", 64 << 20)
    assert rest == ["tmp-rw"]  # the root file system is read-only, /tmp a writable tmpfs


@pytest.mark.usefixtures("busybox_image")
@pytest.mark.parametrize("mode", ["task", "slot"])
@pytest.mark.parametrize("volume", ["/:/host", "/var/run/docker.sock:/var/run/docker.sock"])
def test_root_and_the_docker_socket_are_refused_unless_allowed(tmp_path, mode, volume):
    refused, _ = _run(mode, ["/bin/true"], tmp_path, volumes=[volume])
    assert refused.exit_code == 125 and refused.container_id is None
    assert refused.error is not None and f"volume {volume!r} refused" in refused.error

    source, target = volume.split(":")[:2]
    allowed, _ = _run(mode, ["/bin/sh", "-c", f"test -e {target}/etc/hostname || test -S {target}"], tmp_path,
                      ContainerPolicy(volume_roots=(source,)), volumes=[volume])
    assert allowed.exit_code == 0, allowed


def test_validate_refuses_root_and_the_socket_unless_allowed(tmp_path):
    app = tmp_path / "app.yaml"
    app.write_text("name: lock\nmodules:\n  m:\n    image: scalebox/base:busybox\n"
                   "    volumes: ['/:/host', '/var/run/docker.sock:/var/run/docker.sock']\n")
    env = {k: v for k, v in os.environ.items() if k != "SCALEBOX_VOLUME_ALLOW"}
    cli = [sys.executable, "-m", "scalebox_stream.cli.main", "app", "validate", str(app)]
    refused = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2
    assert "modules.m.volumes[0]: volume '/:/host' refused" in refused.stderr
    assert "modules.m.volumes[1]: volume '/var/run/docker.sock:/var/run/docker.sock' refused" in refused.stderr
    allowed = subprocess.run(cli, capture_output=True, text=True, timeout=60,
                             env={**env, "SCALEBOX_VOLUME_ALLOW": "/:/var/run/docker.sock"})
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.usefixtures("busybox_image")
def test_the_agent_refuses_a_volume_outside_the_allow_list(tmp_path, kafka_bootstrap, pg_dsn, monkeypatch):
    monkeypatch.delenv("SCALEBOX_VOLUME_ALLOW", raising=False)
    app = tmp_path / "app.yaml"
    app.write_text(f"name: lockvol-{uuid.uuid4().hex[:8]}\nmodules:\n  m:\n    image: {IMAGE}\n"
                   "    command: [/bin/true]\n    volumes: ['/:/host']\n")
    cluster = Cluster(app, kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        agent = cluster.start_agent("m", 1)
        cluster.start_projector()
        (task_id,) = cluster.send("m", ["go"])
        assert cluster.wait([task_id], timeout_s=120).finished
        assert agent.process.poll() is None  # an error of the attempt, never a crash
        (run,) = cluster.query("SELECT status, exit_code, error FROM task_runs WHERE task_id = %s", task_id)
    finally:
        cluster.close()
    assert run[0] == "error" and run[1] == 125
    assert "volume '/:/host' refused" in run[2]


def _engine_images(request: pytest.FixtureRequest, engine_name: str) -> str:
    """The image fixture of `engine_name` (docker or podman); returns the module's `executor:` line."""
    request.getfixturevalue("podman_images" if engine_name == "podman" else "busybox_image")
    return f"    executor: {engine_name}\n"


@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_a_fork_bomb_is_stopped_by_the_pids_limit_while_another_slot_carries_on(tmp_path, kafka_bootstrap, pg_dsn,
                                                                              engine_name, request):
    executor = _engine_images(request, engine_name)
    # Background sleeps up to 10,000 (bounded), in a container limited to 64 processes; then the bomb holds its
    # slot at the limit for 6 s (`read` on a FIFO opened before: a builtin, no fork) while the others run.
    bomb = ('if [ "$1" = bomb ]; then mkfifo "$WORK_DIR/hold"; exec 3<>"$WORK_DIR/hold"; '
            '(i=0; while [ $i -lt 10000 ]; do sleep 60 & i=$((i+1)); done; echo "started $i"); '
            'read -t 6 x <&3; fi; echo ok')
    app = tmp_path / "app.yaml"
    app.write_text(f"name: lockbomb-{uuid.uuid4().hex[:8]}\nmodules:\n  m:\n    image: {IMAGE}\n{executor}"
                   f"    command: [/bin/sh, -c, '{bomb}', sh]\n    resources: {{pids: 64}}\n"
                   "    task_max_seconds: 60\n")
    cluster = Cluster(app, kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        agent = cluster.start_agent("m", 2)
        cluster.start_projector()
        (bomb_id,) = cluster.send("m", ["bomb"])
        time.sleep(2)  # the bomb runs in one slot while the others go through the other
        others = cluster.send("m", [f"ok-{i}" for i in range(10)])
        state = cluster.wait([bomb_id, *others], timeout_s=180)
        assert state.finished
        assert agent.process.poll() is None
        statuses = dict(cluster.query("SELECT task_id::text, status FROM tasks WHERE task_id::text = ANY(%s)",
                                      [bomb_id, *others]))
        (bomb_run,) = cluster.query("SELECT stdout, stderr, started_at, finished_at FROM task_runs "
                                    "WHERE task_id = %s", bomb_id)
        meanwhile = cluster.query("SELECT count(*) FROM task_runs WHERE task_id::text = ANY(%s) "
                                  "AND started_at > %s AND started_at < %s", others, bomb_run[2], bomb_run[3])
        executors = cluster.query("SELECT DISTINCT executor FROM task_runs WHERE task_id::text = ANY(%s) "
                                  "AND executor IS NOT NULL", [bomb_id, *others])  # attempts that started
    finally:
        cluster.close()
    assert executors == [(engine_name,)]
    assert all(statuses[t] == "succeeded" for t in others), statuses
    assert meanwhile[0][0] > 0, "no other task ran while the bomb held its slot"
    assert "started 10000" not in bomb_run[0]  # the bomb never got its 10,000 processes
    assert "fork" in bomb_run[1].lower() or statuses[bomb_id] != "succeeded", bomb_run


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed orphan may wait for a reaper as a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _process_executor_with_cgroups(fast_moves: bool | None = None) -> ProcessExecutor:
    """A process executor that puts each attempt in a cgroup of its own; without a writable cgroup v2 the test
    is skipped, but fails under CI (its machine has one). `fast_moves`: move each program on the spawning thread
    (True) or on the helper thread (False), whatever the mount favors (None: as the mount says)."""
    executor = ProcessExecutor()
    if executor.cgroups is None or not executor.cgroups.available():
        reason = f"no writable cgroup v2 here: {executor.cgroups and executor.cgroups.reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    if fast_moves is not None:
        executor.cgroups.fast_moves = fast_moves
    return executor


@pytest.mark.parametrize("fast_moves", [True, False], ids=["move-on-spawning-thread", "move-on-helper-thread"])
def test_a_setsid_grandchild_of_a_process_task_dies_with_its_timeout(tmp_path, fast_moves):
    executor = _process_executor_with_cgroups(fast_moves)
    script = "setsid sh -c 'echo $$ > \"$WORK_DIR/grandchild.pid\"; exec sleep 300' & sleep 300"
    result = executor.run(ExecRequest(argv=["/bin/sh", "-c", script], env={}, work_dir=tmp_path, name="setsid",
                                      timeout_s=1.0), lambda _: None)
    executor.close()
    assert result.timed_out and result.exit_code == 124
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


@pytest.mark.parametrize("fast_moves", [True, False], ids=["move-on-spawning-thread", "move-on-helper-thread"])
def test_a_setsid_grandchild_dies_when_its_task_ends_and_the_attempts_cgroup_goes(tmp_path, fast_moves):
    """The move into the attempt's cgroup runs on the spawning thread where the mount favors moves, else on a
    helper thread (the kill and removal at the task's end then wait for it, and the attempt's report does not);
    either way the removal kills what the task left in it. An emptied cgroup may be kept for the next attempt
    (moves on the spawning thread): none is left populated, and none at all once the executor is closed."""
    executor = _process_executor_with_cgroups(fast_moves)
    mine = f"*-{os.getpid()}-*"
    others = set(executor.cgroups.parent.glob(mine))  # kept by other executors of this test process
    script = "setsid sh -c 'echo $$ > \"$WORK_DIR/grandchild.pid\"; exec sleep 300' & sleep 0.2"
    result = executor.run(ExecRequest(argv=["/bin/sh", "-c", script], env={}, work_dir=tmp_path, name="ends",
                                      timeout_s=30.0), lambda _: None)
    assert result.exit_code == 0 and not result.timed_out, result
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while (_alive(pid) or list(executor.cgroups.parent.glob(f"ends-{os.getpid()}-*"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [c for c in executor.cgroups.parent.glob(mine) if "populated 1" in (c / "cgroup.events").read_text()]
    executor.close()
    assert not _alive(pid)
    assert not list(executor.cgroups.parent.glob(f"ends-{os.getpid()}-*"))
    assert not set(executor.cgroups.parent.glob(mine)) - others


@pytest.mark.parametrize("executor", ["docker", "podman", "process"])
def test_a_secret_reaches_the_task_and_nothing_else(tmp_path, kafka_bootstrap, pg_dsn, executor, monkeypatch,
                                                   request):
    since_ms = int(time.time() * 1000) - 1000
    marker = f"SECRET-{uuid.uuid4().hex}"
    token = f"TOKEN-{uuid.uuid4().hex}"
    secret_file = tmp_path / "secrets" / "db"
    secret_file.parent.mkdir()
    secret_file.write_text(marker + "\n")
    monkeypatch.setenv("LOCK_TEST_TOKEN", token)  # the agents inherit it
    digest = hashlib.sha256(f"{marker}{token}".encode()).hexdigest()
    # The task checks both values by their hash (the app file holds neither), then echoes them everywhere.
    check = (f'test "$(printf %s "$DB_PASSWORD$API_TOKEN" | sha256sum | cut -c1-64)" = {digest} || exit 7; '
             'echo "out $DB_PASSWORD"; echo "err $API_TOKEN" >&2; echo "$DB_PASSWORD" > "$WORK_DIR/custom-out.txt"')
    where = f"    image: {IMAGE}\n{_engine_images(request, executor)}" if executor != "process" else ""
    app = tmp_path / "app.yaml"
    app.write_text(f"name: locksecret-{uuid.uuid4().hex[:8]}\nmodules:\n  m:\n{where}"
                   f"    command: [/bin/sh, -c, '{check}']\n"
                   f"    secrets:\n      DB_PASSWORD: {{file: {secret_file}}}\n"
                   "      API_TOKEN: {env: LOCK_TEST_TOKEN}\n")
    cluster = Cluster(app, kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        cluster.start_agent("m", 1)
        cluster.start_projector()
        (task_id,) = cluster.send("m", ["go"])
        assert cluster.wait([task_id], timeout_s=120).finished
        (run,) = cluster.query("SELECT status, exit_code, stdout, stderr, custom_out, executor FROM task_runs "
                               "WHERE task_id = %s", task_id)
        shown = subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", "task", "show", task_id, "--json",
                                "--pg", pg_dsn], capture_output=True, timeout=60)
    finally:
        cluster.close()
    assert run[:2] == ("succeeded", 0), run
    assert run[2:5] == ("out [secret]\n", "err [secret]\n", "[secret]\n")
    assert run[5] == executor
    logs = [tmp_path / "logs", *Path("/var/log").glob("podman-service-*.log")]  # the API services' (install-podman.sh)
    for value in (marker, token):
        assert_no_leak(kafka_bootstrap, pg_dsn, value.encode(), since_ms)
        assert in_files(logs, value.encode()) == []
        assert value.encode() not in shown.stdout + shown.stderr
