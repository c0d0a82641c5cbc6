"""Executors run one task attempt: as a host process or in a container engine."""

from __future__ import annotations

from scalebox_stream.executors.base import ExecRequest, ExecResult, Executor, StartedCallback
from scalebox_stream.spec.model import ENGINE_EXECUTORS

__all__ = ["ExecRequest", "ExecResult", "Executor", "StartedCallback", "make_executor"]

AVAILABLE = ENGINE_EXECUTORS
PLANNED = ("podman", "apptainer", "singularity")
CONTAINER_MODES = ("task", "slot")


def make_executor(name: str, container_mode: str = "task") -> Executor:
    """Returns a new executor by name ("process" or "docker").

    `container_mode` (a module's `container_mode`): "task" runs one container per attempt, "slot" one
    long-lived container per agent slot (docker only).
    """
    if container_mode not in CONTAINER_MODES:
        raise ValueError(f"unknown container_mode '{container_mode}' (use {' or '.join(CONTAINER_MODES)})")
    if container_mode == "slot" and name != "docker":
        raise ValueError(f"container_mode 'slot' needs the docker executor, not '{name}'")
    if name == "process":
        from scalebox_stream.executors.process import ProcessExecutor

        return ProcessExecutor()
    if name == "docker" and container_mode == "slot":
        from scalebox_stream.executors.docker_slots import DockerSlotExecutor

        return DockerSlotExecutor()
    if name == "docker":
        from scalebox_stream.executors.docker import DockerExecutor

        return DockerExecutor()
    if name in PLANNED:
        raise ValueError(f"executor '{name}' is not available yet (available: {', '.join(AVAILABLE)})")
    raise ValueError(f"unknown executor '{name}' (available: {', '.join(AVAILABLE)})")
