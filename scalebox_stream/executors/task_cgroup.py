"""A cgroup v2 per process-executor attempt, so that a timeout (or the task's end) kills everything it started.

A process group is escaped by a child that calls `setsid`; a cgroup is not. When the cgroup v2 tree is
writable (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host; needs root or a delegated tree,
and Linux 5.14 for `cgroup.kill`), each attempt gets `<root>/scalebox-process/<name>`; the program is moved
into it as soon as it is spawned, with whatever it forked meanwhile (`adopt`), and `kill()` writes
`cgroup.kill`. Moving it after the spawn keeps the fast vfork spawn (joining in the child, between fork and
exec, needs a full fork: ~1.4 ms more per task); what could still escape is a grandchild whose parent forked
it and exited between the exec and the move.

How soon the move comes depends on the mount. A move takes the kernel's `cgroup_threadgroup_rwsem` for writing;
on a tree mounted with `favordynmods` (Linux 6.0+, `TaskCgroups.fast_moves`) that costs tens of microseconds, so
the spawning thread moves the program at once, while the new program is still being loaded (the window is the
agent's few system calls after the exec), and a cgroup left empty by an attempt serves the next one. Without
it, the first move after an idle spell waits for an RCU grace period, 7-15 ms on a 2-core VM, which the attempt
need not wait for: the move runs on a helper thread (`adopt_in_background`), and a kill or removal asked for
before it is done follows it. Elsewhere
`TaskCgroups.available()` is False and the executor falls back to killing the process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
PARENT = "scalebox-process"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_REMOVE_WAIT_S = 1.0
_POOL_MAX = 64
"""Empty cgroups kept for reuse (`TaskCgroups.create`): more than an agent's slots ever need at once."""


def v2_root(root: Path = CGROUP_ROOT) -> Path | None:
    """The mounted cgroup v2 tree that has `cgroup.kill` (pure v2, or hybrid's `unified`), else None."""
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").is_file():  # a v2 mount (v1 hierarchies have no such file)
            return candidate
    return None


def favors_dynamic_moves(tree: Path, mountinfo: Path = MOUNTINFO) -> bool:
    """Whether the cgroup2 mount at `tree` has the `favordynmods` option (its moves need no grace period)."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return False
    return any(_mount_favors_moves(line, str(tree)) for line in lines)


def _mount_favors_moves(line: str, mount_point: str) -> bool:
    """One `/proc/self/mountinfo` line: `id parent dev root point options [tags] - fstype source super-options`."""
    fields, _, rest = line.partition(" - ")
    before, after = fields.split(), rest.split()
    return (len(before) >= 5 and len(after) >= 3 and before[4] == mount_point and after[0] == "cgroup2"
            and "favordynmods" in after[2].split(","))


class TaskCgroup:
    """One attempt's cgroup: `adopt(pid)` to move the program in, `kill()` to end everything in it."""

    def __init__(self, path: Path, made: bool = True, pool: list[TaskCgroup] | None = None) -> None:
        """`made`: the directory exists; else the move makes it first (`TaskCgroups.create(later=True)`). `pool`:
        where `remove` puts it back, when it is empty, for another attempt (see `TaskCgroups.create`)."""
        self.path = path
        self._pool = pool
        self._procs = self._events = -1
        if made:
            self._open_files()
        self._lock = threading.Lock()
        self._moved = True
        """False while a background move is under way (see `adopt_in_background`)."""
        self._kill_asked = self._remove_asked = False

    def _open_files(self) -> None:
        """Open `cgroup.procs` (moves) and `cgroup.events` (the `populated` check), kept open while the cgroup
        lives: opening a cgroup file costs about as much as the write or the read itself, several times over."""
        self._procs = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._events = os.open(self.path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self._procs)
            self._procs = -1
            raise

    def adopt_in_background(self, pid: int) -> None:
        """`adopt(pid)` on a helper thread; `kill` and `remove` called meanwhile take effect right after it.
        `pid` must be the caller's unreaped child: once the caller has reaped it, it is not moved (its number
        may be another process's by then)."""
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # gone already, or no pidfds (Linux < 5.3): move it now, as `adopt` does
            pidfd = None
        if pidfd is None:
            self.adopt(pid)
            return
        self._moved = False
        _MOVER.submit(self._adopt_then_follow, pid, pidfd)

    def _adopt_then_follow(self, pid: int, pidfd: int) -> None:
        try:
            try:
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # running or a zombie: still ours
                self.adopt(pid)
            except ChildProcessError:
                pass  # reaped already (a program that ended at once): its number is not ours to move
            except Exception:  # (the executor would keep it in a future nobody reads)
                log.exception("moving a program into its cgroup failed")
            finally:
                os.close(pidfd)
        finally:
            with self._lock:
                self._moved = True
                kill, remove = self._kill_asked, self._remove_asked
            if kill:
                self._kill_now()
            if remove:
                self._remove_now()

    def adopt(self, pid: int) -> None:
        """Moves process `pid` into the cgroup, then every descendant it has by now (children first forked
        before the move stay where they were otherwise)."""
        if not self._make():
            return
        todo = [pid]
        while todo:
            current = todo.pop()
            with contextlib.suppress(OSError):  # gone already (ESRCH): its children may not be
                os.write(self._procs, str(current).encode())
            todo.extend(_children(current))

    def _make(self) -> bool:
        """Make the directory if it was left for later; False if it cannot be made (the caller's process group
        kill is then all there is, as where no cgroup is available)."""
        if self._procs >= 0:
            return True
        try:
            self.path.mkdir()
            self._open_files()
        except OSError:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            return False
        return True

    def kill(self) -> None:
        """SIGKILLs every process in the cgroup (setsid'ed grandchildren too); after the move, if one is under way."""
        with self._lock:
            if not self._moved:
                self._kill_asked = True
                return
        self._kill_now()

    def _kill_now(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_bytes(b"1")

    def populated(self) -> bool:
        """Whether a process is in it (True if that cannot be read)."""
        try:
            return b"populated 0" not in os.pread(self._events, 256, 0)  # a kernfs file reads afresh from 0
        except OSError:
            return True

    def remove(self) -> None:
        """Puts the cgroup back in its pool if it is empty; else closes the handle and removes it, killing what is
        left in it first and waiting a moment for it to go. After the move, if one is under way (the caller does
        not wait for it)."""
        with self._lock:
            if not self._moved:
                self._remove_asked = True
                return
        self._remove_now()

    def _remove_now(self) -> None:
        if self._procs < 0:
            return  # never made
        pool = self._pool
        if pool is not None and len(pool) < _POOL_MAX and not self.populated():
            pool.append(self)  # list.append is atomic: the pool needs no lock of its own
            return
        self.close()

    def close(self) -> None:
        """Closes the handle and removes the cgroup (see `remove`), whatever pool it came from."""
        if self._procs < 0:
            return
        for fd in (self._procs, self._events):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._procs = self._events = -1
        deadline = time.monotonic() + _REMOVE_WAIT_S
        pause = 0.001  # killed processes are usually gone by then
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY: something is left in it
                if time.monotonic() > deadline:
                    return  # left behind; removed with the parent's other leftovers by `TaskCgroups.sweep`
                self._kill_now()
                time.sleep(pause)
                pause = 0.005


_MOVER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cgroup-move")
"""The process's one cgroup-move thread (started on first use): a thread per attempt cost the agent about 0.1 ms
of CPU per task, and moves wait for the same kernel locks anyway."""


def _children(pid: int) -> list[int]:
    """The child pids of every thread of `pid` ([] if it is gone or the kernel does not list them)."""
    out: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in threads:
        try:  # no buffered file object: this runs once per task
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 65536)
            finally:
                os.close(fd)
            out.extend(int(p) for p in text.split())
        except (OSError, ValueError):
            continue
    return out


class TaskCgroups:
    """Makes per-attempt cgroups under `<v2 root>/scalebox-process`, or says it cannot."""

    def __init__(self, root: Path | None = None) -> None:
        base = v2_root() if root is None else root
        self.parent = base / PARENT if base is not None else None
        self.reason: str | None = None if base is not None else "no cgroup v2 tree is mounted"
        self._idle: list[TaskCgroup] = []
        """Empty cgroups of finished attempts, for the next ones (made on the spawning thread only)."""
        self.fast_moves = base is not None and favors_dynamic_moves(base)
        """The tree is mounted with `favordynmods`: make each cgroup and move the program into it on the spawning
        thread (see the module's docstring)."""
        if self.parent is not None:
            try:
                self.parent.mkdir(exist_ok=True)
                if not (self.parent / "cgroup.kill").exists():
                    self.reason = "the kernel has no cgroup.kill (Linux < 5.14)"
                elif not os.access(self.parent / "cgroup.procs", os.W_OK):
                    self.reason = f"{self.parent} is not writable"
            except OSError as e:
                self.reason = f"cannot create {self.parent}: {e.strerror or e}"

    def available(self) -> bool:
        return self.reason is None

    def create(self, name: str, later: bool = False) -> TaskCgroup | None:
        """An empty cgroup for attempt `name`; None if it cannot be made (the caller falls back). One an earlier
        attempt left empty is used again (its `remove` keeps it: a mkdir and an rmdir per attempt cost about as
        much as the move itself). `later`: a new one, whose directory is made by the move into it
        (`TaskCgroup.adopt_in_background`), off the caller's path: a mkdir waits for the cgroup lock, which
        another attempt's move may hold for a grace period."""
        if self.parent is None or self.reason is not None:
            return None
        if later:
            path = self.parent / f"{_SAFE.sub('_', name)[:100]}-{os.getpid()}-{time.monotonic_ns()}"
            return TaskCgroup(path, made=False)
        with contextlib.suppress(IndexError):
            return self._idle.pop()  # atomic; an empty cgroup a previous attempt left
        path = self.parent / f"attempt-{os.getpid()}-{time.monotonic_ns()}"
        try:
            path.mkdir()
            return TaskCgroup(path, pool=self._idle)
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None

    def close(self) -> None:
        """Removes the empty cgroups kept for reuse."""
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    def sweep(self) -> None:
        """Removes empty leftovers of this process's attempts."""
        if self.parent is None:
            return
        for path in self.parent.glob(f"*-{os.getpid()}-*"):
            with contextlib.suppress(OSError):
                path.rmdir()
