"""A running container's cgroup seen from the host: its processes and resource counters.

Slot containers run many tasks; what a task leaves behind is killed from the host by listing the
container's cgroup, and its CPU, memory and block I/O are the cgroup's counters before and after it.
Needs the host's /proc and /sys/fs/cgroup (the agent next to dockerd) and root to signal and to reset
the memory peak; `ContainerCgroup.of_pid` returns None when the processes cannot be listed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from scalebox_stream.executors.docker_common import CGROUP_V1_ROOT, Usage, cgroup_v1_usage

_PROCS_CONTROLLERS = ("pids", "memory", "cpuacct", "unified")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def process_session(pid: int) -> int | None:
    """The session id of a live process (None if it is gone or a zombie)."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # state ppid pgrp session ...
    if len(fields) < 4 or fields[0] in ("Z", "X"):
        return None
    return int(fields[3])


class ContainerCgroup:
    """The cgroup directories of one container, by controller (v1; the v2 tree as "unified")."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self._procs = next((dirs[c] / "cgroup.procs" for c in _PROCS_CONTROLLERS
                            if c in dirs and (dirs[c] / "cgroup.procs").is_file()), None)

    @classmethod
    def of_pid(cls, pid: int, container_id: str, root: Path = CGROUP_V1_ROOT) -> ContainerCgroup | None:
        """The cgroup of container `container_id`, whose init has host pid `pid`; None if unreadable
        (or if that pid is another process: the agent is in another pid namespace)."""
        text = _read(Path(f"/proc/{pid}/cgroup")) if pid > 0 else None
        if not text or container_id not in text:
            return None
        dirs: dict[str, Path] = {}
        for line in text.splitlines():
            _, controllers, rel = line.split(":", 2)
            rel = rel.lstrip("/")
            if not controllers:  # the cgroup v2 line (under unified/ in hybrid mode)
                dirs["unified"] = (root / "unified" if (root / "unified").is_dir() else root) / rel
                continue
            for controller in controllers.split(","):
                dirs[controller.removeprefix("name=")] = root / controllers.removeprefix("name=") / rel
        cgroup = cls(dirs)
        return cgroup if cgroup.procs() else None

    def procs(self) -> list[int]:
        """Host pids of every process in the container ([] if unreadable)."""
        text = _read(self._procs) if self._procs is not None else None
        return [int(p) for p in text.split()] if text else []

    def snapshot(self) -> tuple[set[int], set[int]]:
        """(pids, session ids) of the processes running now: those to keep when a task is cleaned up."""
        pids = set(self.procs())
        return pids, {s for p in pids if (s := process_session(p)) is not None}

    def kill_others(self, keep_pids: set[int], keep_sessions: set[int], rounds: int = 50) -> int:
        """SIGKILLs every live process not kept (nor in a kept session) until none is left; returns
        how many were signalled. Repeats, since a dying tree may still fork."""
        killed = 0
        for _ in range(rounds):
            victims = [p for p in self.procs() if p not in keep_pids
                       and (s := process_session(p)) is not None and s not in keep_sessions]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.002)
        return killed

    def _value(self, controller: str, file: str) -> str | None:
        d = self.dirs.get(controller)
        return _read(d / file) if d is not None else None

    def reset_peak(self) -> bool:
        """Resets the v1 memory high-water mark (root only); False if it could not be reset."""
        d = self.dirs.get("memory")
        if d is None:
            return False
        try:
            (d / "memory.max_usage_in_bytes").write_text("0")
        except OSError:
            return False
        return True

    def usage(self, peak_valid: bool = True) -> Usage:
        """The counters now (v1): cumulative CPU and block I/O, and the memory peak since the reset."""
        return cgroup_v1_usage(self._value, with_peak=peak_valid)


def usage_delta(before: Usage, after: Usage) -> Usage:
    """What one task used: counter differences, and the peak measured after it."""
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else max(0.0, b - a)

    def diff_int(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else max(0, b - a)

    return Usage(cpu_user_s=diff(before.cpu_user_s, after.cpu_user_s),
                 cpu_system_s=diff(before.cpu_system_s, after.cpu_system_s),
                 peak_memory_bytes=after.peak_memory_bytes,
                 read_bytes=diff_int(before.read_bytes, after.read_bytes),
                 write_bytes=diff_int(before.write_bytes, after.write_bytes))
