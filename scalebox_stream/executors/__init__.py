"""Executors run one task attempt: as a host process or in a container engine."""

from __future__ import annotations

from scalebox_stream.executors.base import ExecRequest, ExecResult, Executor, StartedCallback
from scalebox_stream.spec.model import ENGINE_EXECUTORS

__all__ = ["ExecRequest", "ExecResult", "Executor", "StartedCallback", "executor_problem", "make_executor"]

AVAILABLE = ENGINE_EXECUTORS
PLANNED = ("apptainer", "singularity")
CONTAINER_MODES = ("task", "slot")
SLOT_MODE = ("docker", "podman")


def make_executor(name: str, container_mode: str = "task") -> Executor:
    """Returns a new executor by name ("process", "docker" or "podman").

    `container_mode` (a module's `container_mode`): "task" runs one container per attempt, "slot" one
    long-lived container per agent slot (docker and podman).
    """
    if container_mode not in CONTAINER_MODES:
        raise ValueError(f"unknown container_mode '{container_mode}' (use {' or '.join(CONTAINER_MODES)})")
    if container_mode == "slot" and name not in SLOT_MODE:
        raise ValueError(f"container_mode 'slot' needs the docker executor or the podman executor, not '{name}'")
    if name == "process":
        from scalebox_stream.executors.process import ProcessExecutor

        return ProcessExecutor()
    if name == "docker" and container_mode == "slot":
        from scalebox_stream.executors.docker_slots import DockerSlotExecutor

        return DockerSlotExecutor()
    if name == "docker":
        from scalebox_stream.executors.docker import DockerExecutor

        return DockerExecutor()
    if name == "podman" and container_mode == "slot":
        from scalebox_stream.executors.podman import PodmanSlotExecutor

        return PodmanSlotExecutor()
    if name == "podman":
        from scalebox_stream.executors.podman import PodmanExecutor

        return PodmanExecutor()
    if name in PLANNED:
        raise ValueError(f"executor '{name}' is not available yet (available: {', '.join(AVAILABLE)})")
    raise ValueError(f"unknown executor '{name}' (available: {', '.join(AVAILABLE)})")


def executor_problem(name: str, container_mode: str = "task") -> str | None:
    """Why executor `name` cannot run on this host (None: it can), e.g. for `app validate`.

    Checks what an agent would need before it starts: a known executor and mode, and for podman an answering
    Podman API service (see executors/podman.py). Docker is not probed here (agents report a missing dockerd
    per attempt, and many hosts validate apps without one).
    """
    if container_mode not in CONTAINER_MODES:
        return f"unknown container_mode '{container_mode}' (use {' or '.join(CONTAINER_MODES)})"
    if container_mode == "slot" and name not in SLOT_MODE:
        return f"container_mode 'slot' needs the docker executor or the podman executor, not '{name}'"
    if name == "podman":
        from scalebox_stream.executors.podman import podman_problem

        return podman_problem()
    if name in PLANNED:
        return f"executor '{name}' is not available yet (available: {', '.join(AVAILABLE)})"
    if name not in AVAILABLE:
        return f"unknown executor '{name}' (available: {', '.join(AVAILABLE)})"
    return None
