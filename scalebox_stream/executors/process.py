"""Runs a task attempt as a plain host process (no container)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time

from scalebox_stream.executors.base import (
    TIMEOUT_EXIT_CODE,
    ExecRequest,
    ExecResult,
    StartedCallback,
    prefixed_path,
)
from scalebox_stream.executors.lifecycle import SlotScripts
from scalebox_stream.executors.output import DEFAULT_MAX_OUTPUT_BYTES, ProgramOutput
from scalebox_stream.executors.task_cgroup import TaskCgroup, TaskCgroups

log = logging.getLogger(__name__)
_fallback_logged = False

INHERITED_ENV = ("PATH", "HOME", "LANG")
EXECUTOR_ERROR_EXIT_CODE = 125
PROGRAM_CACHE_SECONDS = 10.0
"""How long a program name's place on PATH is remembered (a program installed earlier on PATH is seen after it)."""


def now_us() -> int:
    """Wall-clock time in microseconds since the epoch."""
    return time.time_ns() // 1000


class _GroupKiller:
    """Kills a process group on timeout: SIGTERM, then SIGKILL after a grace period; SIGKILL also kills the
    attempt's cgroup (when it has one), so that processes that left the group (`setsid`) die too.

    Signals are sent only while `done` is False, which the caller sets before it reaps the group
    leader, so the process group id cannot have been reused by then. The reading thread keeps the time limit
    (`on_deadline`, from `ProgramOutput.read_until_exit`); another thread may only `signal` (an agent's abort).
    """

    def __init__(self, pgid: int, grace_s: float, cgroup: TaskCgroup | None = None) -> None:
        self.pgid = pgid
        self.cgroup = cgroup
        self.grace_s = grace_s
        self.timed_out = False
        self.done = False
        self.lock = threading.Lock()

    def signal(self, sig: int, whole_cgroup: bool = True) -> None:
        """`sig` to the process group; a SIGKILL to the cgroup too, unless not `whole_cgroup` (at the attempt's
        end: `TaskCgroup.remove` kills whatever keeps the cgroup busy, and nothing usually does)."""
        with self.lock:
            if not self.done:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pgid, sig)
                if sig == signal.SIGKILL and whole_cgroup and self.cgroup is not None:
                    self.cgroup.kill()

    def on_deadline(self) -> float | None:
        """The time limit passed: SIGTERM and the next deadline (the end of the grace period) the first time,
        SIGKILL the second."""
        if not self.timed_out:
            self.timed_out = True
            self.signal(signal.SIGTERM)
            return time.monotonic() + self.grace_s
        self.signal(signal.SIGKILL)
        return None


class ProgramPaths:
    """Where a bare program name (`sh`) lives on a PATH, remembered for a while.

    Given a bare name, the child would try `execve` in every PATH directory before the right one (while the
    vfork'ed parent thread waits), and the parent would build that list of paths in Python on every spawn."""

    def __init__(self, ttl_s: float = PROGRAM_CACHE_SECONDS) -> None:
        self.ttl_s = ttl_s
        self._found: dict[tuple[str, str], tuple[float, str]] = {}

    def resolve(self, program: str, path: str) -> str | None:
        """The file `program` names on `path`; None for a name with a slash (relative to the work dir, or
        absolute: used as it is) or one not found (the spawn then searches, and fails, the usual way)."""
        if "/" in program:
            return None
        now = time.monotonic()
        hit = self._found.get((program, path))
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        found = shutil.which(program, path=path)
        if found is None:
            self._found.pop((program, path), None)
            return None
        self._found[(program, path)] = (now, found)
        return found

    def forget(self, program: str, path: str) -> None:
        """Drop what is remembered of `program` (its file vanished)."""
        self._found.pop((program, path), None)


class ProcessExecutor:
    """One host process per attempt, in its own session and process group.

    When the program ends (or times out) any process it left in its group is killed, as a container's
    end would; where cgroup v2 is writable each attempt also runs in its own cgroup (`task_cgroup`), which
    is killed whole, so a process that left the group with `setsid` dies too (elsewhere: the group only,
    logged once). stdout and stderr go to pipes that the slot reads while the program runs (`output.ProgramOutput`),
    so a chatty program neither blocks on a full pipe nor fills the agent's memory: the head and tail of each
    are kept (`max_output_bytes`).
    """

    name = "process"

    def __init__(self, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, kill_grace_s: float = 2.0,
                 use_cgroups: bool = True) -> None:
        self.max_output_bytes = max_output_bytes
        self.kill_grace_s = kill_grace_s
        self._active: set[_GroupKiller] = set()
        self.programs = ProgramPaths()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # every program's stdin, opened once
        self.scripts = SlotScripts()
        self.cgroups = TaskCgroups() if use_cgroups else None
        if self.cgroups is not None and not self.cgroups.available():
            _log_fallback(str(self.cgroups.reason))

    def run(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        """Run the attempt, after the slot's setup if it has not run yet (see `lifecycle`)."""
        if (failed := self.scripts.ensure_setup(request, self._run_once)) is not None:
            return failed
        return self._run_once(request, on_started)

    def _run_once(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        started = now_us()
        if not request.argv:
            return _error(127, "empty argv", started)
        if not request.work_dir.is_dir():
            return _error(EXECUTOR_ERROR_EXIT_CODE, f"work dir {request.work_dir} does not exist", started)
        env = self._environment(request)
        limit = max(self.max_output_bytes, 2 * (request.keep_output_bytes or 0))
        cgroups = self.cgroups
        cgroup = (cgroups.create(request.name, later=not cgroups.fast_moves)
                  if cgroups is not None and cgroups.available() else None)
        try:
            with ProgramOutput(limit) as output:
                try:
                    proc = self._spawn(request, env, output.stdout_w, output.stderr_w, cgroup)
                except FileNotFoundError as e:
                    return _error(127, f"command not found: {e}", started)
                except (PermissionError, OSError) as e:
                    return _error(126, f"cannot execute: {e}", started)
                output.spawned()
                result = self._wait(proc, request, on_started, started, output, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()
        result.stdout, result.stdout_total = output.stdout.value(), output.stdout.total
        result.stderr, result.stderr_total = output.stderr.value(), output.stderr.total
        return result

    def abort(self) -> None:
        """SIGKILL the process group of every attempt still running."""
        for killer in list(self._active):
            killer.signal(signal.SIGKILL)

    def close(self) -> None:
        """Run the slots' teardown, then remove the empty cgroups kept for reuse and close the shared stdin."""
        self.scripts.teardown_all(self._run_once)
        if self.cgroups is not None:
            self.cgroups.close()
        with contextlib.suppress(OSError):
            os.close(self._devnull)

    def _spawn(self, request: ExecRequest, env: dict[str, str], out: int, err: int,
               cgroup: TaskCgroup | None = None) -> subprocess.Popen[bytes]:
        """Start the program at the path its name resolves to on the program's PATH (see `ProgramPaths`); if
        that file has gone since it was found, the usual search. With a cgroup, the program (and whatever it
        forked already) is moved into it at once: here where moves are cheap (`TaskCgroups.fast_moves`), else on a
        helper thread (`TaskCgroup.adopt_in_background`)."""
        search_path = env.get("PATH", os.defpath)
        program = self.programs.resolve(request.argv[0], search_path)
        spawn = functools.partial(subprocess.Popen, request.argv, cwd=request.work_dir, env=env, stdin=self._devnull,
                                  stdout=out, stderr=err, start_new_session=True)
        try:
            proc = spawn(executable=program)
        except (FileNotFoundError, PermissionError):
            if program is None:
                raise
            self.programs.forget(request.argv[0], search_path)
            proc = spawn()
        if cgroup is not None:
            if self.cgroups is not None and self.cgroups.fast_moves:
                cgroup.adopt(proc.pid)
            else:
                cgroup.adopt_in_background(proc.pid)
        return proc

    @staticmethod
    def _environment(request: ExecRequest) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(request.env)
        if (path := prefixed_path(request.path_prefix, env.get("PATH", os.defpath))) is not None:
            env["PATH"] = path
        env["WORK_DIR"] = os.path.abspath(request.work_dir)  # no symlink walk: one per task showed in profiles
        return env

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        request: ExecRequest,
        on_started: StartedCallback,
        started: int,
        output: ProgramOutput,
        cgroup: TaskCgroup | None = None,
    ) -> ExecResult:
        killer = _GroupKiller(proc.pid, self.kill_grace_s, cgroup)
        self._active.add(killer)
        io: dict[str, int] = {}
        deadline = None
        if request.timeout_s is not None and request.timeout_s > 0:
            deadline = time.monotonic() + request.timeout_s
        try:
            on_started(None)
            # Wait without reaping: the zombie leader keeps the process group id reserved while the
            # rest of the group is killed.
            output.read_until_exit(proc.pid, deadline, killer.on_deadline)
            io = read_proc_io(proc.pid)
        finally:
            # Leftovers of the group, or everything if on_started raised; the cgroup's die with its removal.
            killer.signal(signal.SIGKILL, whole_cgroup=False)
            with killer.lock:
                killer.done = True
            self._active.discard(killer)
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            agent_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # >= its peak at the fork
        finished = now_us()
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if killer.timed_out:
            code = TIMEOUT_EXIT_CODE
        elif sig is not None:
            code = 128 + sig
        else:
            code = os.WEXITSTATUS(status)
        return ExecResult(
            exit_code=code,
            timed_out=killer.timed_out,
            signal=sig,
            started_at_us=started,
            finished_at_us=finished,
            read_bytes=io.get("rchar"),
            write_bytes=io.get("wchar"),
            cpu_user_s=rusage.ru_utime,
            cpu_system_s=rusage.ru_stime,
            # A child's ru_maxrss starts at the agent's own peak RSS (Linux records the old address
            # space's high-water mark at exec), so a lower peak cannot be measured this way.
            peak_memory_bytes=rusage.ru_maxrss * 1024 if rusage.ru_maxrss > agent_peak_kib else None,
        )


def read_proc_io(pid: int) -> dict[str, int]:
    """The I/O counters of a process (a zombie's too, which include its reaped children); {} if unreadable."""
    try:
        fd = os.open(f"/proc/{pid}/io", os.O_RDONLY)  # no buffered text layer: this runs once per task
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
        return {key.decode(): int(value) for key, _, value in (line.partition(b":") for line in text.splitlines())
                if value}
    except (OSError, ValueError):
        return {}


def _log_fallback(reason: str) -> None:
    """Says once per agent that timeouts kill process groups only (a `setsid` child can outlive its task)."""
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        log.warning("process executor: no per-task cgroup (%s); a timeout kills the task's process group only, "
                    "so a child that calls setsid can outlive its task", reason)


def _error(code: int, message: str, started: int) -> ExecResult:
    return ExecResult(exit_code=code, error=message, started_at_us=started, finished_at_us=now_us())
