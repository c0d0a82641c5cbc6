"""The protocol every executor (process, docker, podman, apptainer) implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scalebox_stream.executors.lockdown import ContainerPolicy

TIMEOUT_EXIT_CODE = 124


@dataclass(frozen=True)
class ExecRequest:
    """One attempt of one task, as an executor sees it.

    `argv` is the full argument vector (command followed by body and headers JSON); it is never given
    to a shell. `work_dir` is a fresh host directory that the program sees as its work directory
    (mounted at `/work` in containers).
    """

    argv: list[str]
    env: dict[str, str]
    work_dir: Path
    name: str
    image: str | None = None
    volumes: list[str] = field(default_factory=list)
    """The module's own volumes (`src:dst[:mode]`): container executors mount them only where the volume
    allow-list lets them (`policy`)."""
    agent_volumes: list[str] = field(default_factory=list)
    """Mounts the agent adds itself (the in-task tools and the slot's channel): not the module's choice, so
    not subject to the allow-list."""
    timeout_s: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    keep_output_bytes: int | None = None
    """Keep at least this many bytes of each end of stdout and stderr (None: the executor's default)."""
    slot: int = 0
    """The agent slot running the attempt (slot-mode executors keep one container per slot)."""
    path_prefix: str | None = None
    """A directory, as the program sees it, to put first on its PATH (the in-task tools)."""
    network: str | None = None
    """The container's network: none, bridge or host (None: the executor's default)."""
    setup: list[str] | None = None
    """The slot's setup script (argv), run once in the module's runtime before the slot's first attempt."""
    teardown: list[str] | None = None
    """The slot's teardown script (argv), run once in the module's runtime when the executor closes."""
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)
    """How a container is locked down and which volumes it may mount (container executors)."""


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH of a container whose image sets none."""


def prefixed_path(prefix: str | None, path: str | None) -> str | None:
    """`path` with `prefix` first (None: no prefix, nothing to change)."""
    if not prefix:
        return None
    return f"{prefix}:{path}" if path else prefix


@dataclass
class ExecResult:
    """What an executor observed about one attempt."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_total: int | None = None
    """Bytes the program wrote to stdout, before any capping (None: unknown, use len(stdout))."""
    stderr_total: int | None = None
    timed_out: bool = False
    signal: int | None = None
    started_at_us: int = 0
    finished_at_us: int = 0
    container_id: str | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    peak_memory_bytes: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    error: str | None = None


StartedCallback = Callable[[str | None], None]
"""Called once the program runs, with the container id (None for a plain process)."""


class Executor(Protocol):
    """Runs one attempt to completion; never raises for a failing user program."""

    name: str

    def run(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult: ...

    def abort(self) -> None:
        """Kill every attempt still running (the agent is shutting down); their `run` calls return."""
        ...

    def close(self) -> None: ...
