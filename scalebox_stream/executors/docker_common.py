"""Helpers shared by the docker executors (one container per attempt, one per slot)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from scalebox_stream.executors.base import ExecResult
from scalebox_stream.executors.process import EXECUTOR_ERROR_EXIT_CODE, now_us

MANAGED_LABEL = "scalebox.managed"
CONTAINER_WORK_DIR = "/work"
CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
VALID_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Docker's rule for container names


@dataclass
class Usage:
    """Resource counters of a cgroup (None: not available)."""

    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    peak_memory_bytes: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None


def sum_blkio(text: str, op: str) -> int:
    """Total bytes of one operation (Read, Write) in a v1 `blkio.*io_service_bytes*` file."""
    return sum(int(p[2]) for line in text.splitlines() if len(p := line.split()) == 3 and p[1] == op)


def cgroup_v1_usage(read: Callable[[str, str], str | None], with_peak: bool = True) -> Usage:
    """CPU, peak memory and block I/O from cgroup v1 files; `read(controller, file)` gives a file or None."""
    u = Usage()
    user, system = read("cpuacct", "cpuacct.usage_user"), read("cpuacct", "cpuacct.usage_sys")
    if user is not None and system is not None:
        u.cpu_user_s, u.cpu_system_s = int(user) / 1e9, int(system) / 1e9
    peak = read("memory", "memory.max_usage_in_bytes") if with_peak else None
    if peak is not None:
        u.peak_memory_bytes = int(peak)
    blkio = read("blkio", "blkio.throttle.io_service_bytes_recursive")
    if blkio is not None:
        u.read_bytes, u.write_bytes = sum_blkio(blkio, "Read"), sum_blkio(blkio, "Write")
    return u


def apply_usage(result: ExecResult, usage: Usage) -> None:
    """Copies the counters onto a result."""
    result.cpu_user_s = usage.cpu_user_s
    result.cpu_system_s = usage.cpu_system_s
    result.peak_memory_bytes = usage.peak_memory_bytes
    result.read_bytes = usage.read_bytes
    result.write_bytes = usage.write_bytes


def explain(e: Exception) -> str:
    """A Docker error as one line (the daemon's explanation when there is one)."""
    if isinstance(e, docker.errors.APIError) and e.explanation:
        return str(e.explanation)
    return str(e) or type(e).__name__


def name_in_use(e: docker.errors.APIError) -> bool:
    """A create refused because the container name is taken (Docker: 409 Conflict; Podman 4: 500 "... that
    name is already in use")."""
    return e.status_code == 409 or "name is already in use" in str(e.explanation or "")


def error_result(message: str, started: int, container_id: str | None) -> ExecResult:
    """An attempt the engine could not run: exit code 125 with `error` set."""
    return ExecResult(exit_code=EXECUTOR_ERROR_EXIT_CODE, error=message, started_at_us=started,
                      finished_at_us=now_us(), container_id=container_id)


def files_in_image(api: docker.APIClient, image: str, paths: list[str]) -> set[str]:
    """Which of `paths` (files) exist in `image`: looked up in a container that is created, never started,
    and removed. Used once per module, for the scripts of Scalebox's module contract an image ships."""
    container = api.create_container(image, entrypoint=["/bin/true"], command=[], network_disabled=True,
                                     labels={MANAGED_LABEL: "true"})["Id"]
    try:
        found = set()
        for path in paths:
            try:
                stream, _ = api.get_archive(container, path)
                for _chunk in stream:  # read it all, so the connection goes back to the pool
                    pass
                found.add(path)
            except docker.errors.NotFound:
                continue
        return found
    finally:
        api.remove_container(container, force=True)
