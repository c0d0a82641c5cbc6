"""The podman executor's pure parts: where its service is, the ulimits it sets, Podman's exec failures,
conmon's share of a cgroup, and the check `app validate` can call (no Podman needed)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from scalebox_stream.executors import executor_problem, make_executor
from scalebox_stream.executors.base import ExecResult
from scalebox_stream.executors.podman import (
    PodmanExecutor,
    PodmanSlotExecutor,
    PodmanTaskCgroup,
    podman_exec_failure,
    podman_problem,
    podman_socket,
    podman_ulimits,
)


def test_socket_setting_wins_then_container_host_then_the_defaults() -> None:
    assert podman_socket({"SCALEBOX_PODMAN_SOCKET": "/srv/p.sock", "CONTAINER_HOST": "unix:///x"}, 0) == \
        "unix:///srv/p.sock"
    assert podman_socket({"CONTAINER_HOST": "unix:///x.sock"}, 1000) == "unix:///x.sock"
    assert podman_socket({}, 0) == "unix:///run/podman/podman.sock"
    assert podman_socket({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == "unix:///run/user/1000/podman/podman.sock"
    assert podman_socket({}, 1001) == "unix:///run/user/1001/podman/podman.sock"


def test_ulimits_from_the_setting() -> None:
    limits = podman_ulimits({"SCALEBOX_PODMAN_ULIMITS": "nofile=1024:2048, nproc=512"})
    assert [(u.name, u.soft, u.hard) for u in limits] == [("nofile", 1024, 2048), ("nproc", 512, 512)]
    with pytest.raises(ValueError, match="NAME=SOFT"):
        podman_ulimits({"SCALEBOX_PODMAN_ULIMITS": "nofile=lots"})


def test_default_ulimits_are_the_agents_own_within_what_podman_can_set() -> None:
    by_name = {u.name: u for u in podman_ulimits({})}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert by_name["nofile"].hard == min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)
    assert by_name["nofile"].soft <= by_name["nofile"].hard
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert 0 < by_name["nproc"].soft <= by_name["nproc"].hard <= pid_max


def _result(code: int, stderr: bytes) -> ExecResult:
    return ExecResult(exit_code=code, stderr=stderr, stderr_total=len(stderr))


def test_podman_exec_failures_become_127_and_126_with_the_message() -> None:
    missing = _result(127, b'Error: runc: exec failed: unable to start container process: exec: "/no": stat /no: '
                           b"no such file or directory: OCI runtime attempted to invoke a command that was not "
                           b"found\nError: read unixpacket: connection reset by peer\n")
    code, message = podman_exec_failure(missing) or (0, "")
    assert code == 127 and message.startswith("runc: exec failed") and "no such file" in message
    assert missing.stderr == b"" and missing.stderr_total == 0
    denied = _result(126, b'Error: runc: exec failed: exec: "/etc/passwd": permission denied: OCI permission denied\n')
    assert (podman_exec_failure(denied) or (0, ""))[0] == 126


def test_a_program_exiting_127_on_its_own_is_not_an_exec_failure() -> None:
    own = _result(127, b"Error: my program's own message\n")
    assert podman_exec_failure(own) is None and own.stderr == b"Error: my program's own message\n"
    assert podman_exec_failure(_result(1, b"Error: x OCI runtime y\n")) is None


def _write(root: Path, rel: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        controller, file = name.split("/")
        d = root / controller / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / file).write_text(text)


def test_conmons_share_is_subtracted_and_its_cgroup_removed(tmp_path: Path) -> None:
    _write(tmp_path, "scalebox/t1", {"cpuacct/cpuacct.usage_user": "3000000000",
                                     "cpuacct/cpuacct.usage_sys": "500000000",
                                     "memory/memory.max_usage_in_bytes": "5000000"})
    _write(tmp_path, "scalebox/t1/conmon", {"cpuacct/cpuacct.usage_user": "1000000000",
                                            "cpuacct/cpuacct.usage_sys": "100000000",
                                            "memory/memory.max_usage_in_bytes": "1000000"})
    cgroup = PodmanTaskCgroup("t1", root=tmp_path)
    usage = cgroup.usage()
    assert (usage.cpu_user_s, usage.cpu_system_s, usage.peak_memory_bytes) == (2.0, 0.4, 4000000)
    assert usage.read_bytes is None
    for f in tmp_path.glob("*/scalebox/t1/**/*.*"):  # cgroupfs dirs hold no real files; empty them to rmdir
        f.unlink()
    cgroup.remove()
    assert list(tmp_path.glob("*/scalebox/t1")) == []


def test_make_executor_and_the_validate_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, slot = make_executor("podman"), make_executor("podman", container_mode="slot")
    assert isinstance(task, PodmanExecutor) and isinstance(slot, PodmanSlotExecutor)
    assert task.name == slot.name == "podman"
    socket = tmp_path / "podman.sock"
    monkeypatch.setenv("SCALEBOX_PODMAN_SOCKET", str(socket))
    problem = executor_problem("podman") or ""
    assert f"no Podman API service at unix://{socket}" in problem
    assert f"podman system service --time=0 unix://{socket}" in problem
    assert podman_problem() == problem
    monkeypatch.setenv("SCALEBOX_PODMAN_ULIMITS", "nofile")
    assert "SCALEBOX_PODMAN_ULIMITS" in (executor_problem("podman") or "")
    assert executor_problem("process") is None
    assert "slot" in (executor_problem("process", "slot") or "")
    assert "not available yet" in (executor_problem("apptainer") or "")
