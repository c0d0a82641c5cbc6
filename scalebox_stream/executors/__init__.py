"""Executors run one task attempt: as a host process or in a container engine."""

from __future__ import annotations

from scalebox_stream.executors.base import ExecRequest, ExecResult, Executor, StartedCallback

__all__ = ["ExecRequest", "ExecResult", "Executor", "StartedCallback", "make_executor"]

AVAILABLE = ("process", "docker")
PLANNED = ("podman", "apptainer", "singularity")


def make_executor(name: str) -> Executor:
    """Returns a new executor by name ("process" or "docker")."""
    if name == "process":
        from scalebox_stream.executors.process import ProcessExecutor

        return ProcessExecutor()
    if name == "docker":
        from scalebox_stream.executors.docker import DockerExecutor

        return DockerExecutor()
    if name in PLANNED:
        raise ValueError(f"executor '{name}' is not available yet (available: {', '.join(AVAILABLE)})")
    raise ValueError(f"unknown executor '{name}' (available: {', '.join(AVAILABLE)})")
