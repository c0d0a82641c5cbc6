"""Child processes (agents, projector, state owner) started by `scalebox run` and the app server, each logging
to its own file, and restarted when one ends unexpectedly (`policy.restarts` decides)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from scalebox_stream.config import CliSettings, child_environment
from scalebox_stream.policy.restarts import RestartPolicy, decide_restart, describe_exit, recent_restarts

log = logging.getLogger(__name__)


@dataclass
class Child:
    """One supervised child process: what it runs (to restart it the same way), its restarts so far."""

    name: str
    process: subprocess.Popen
    log_path: Path
    args: list[str] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    """When it was restarted (monotonic seconds), those within the policy's window."""
    restart_at: float | None = None
    """When a restart decided on is due (monotonic seconds); None: none is pending."""

    @property
    def is_agent(self) -> bool:
        """An agent (which stops by itself, with code 0, once its app is finished or it was idle past its
        module's limit), not the projector or the state owner (which run until stopped)."""
        return self.name.startswith("agent-")

    def exited(self) -> int | None:
        """The exit code if the child has ended, else None."""
        return self.process.poll()

    def note(self, line: str) -> None:
        """Append a supervisor's line to the child's log, between the child's own lines."""
        try:
            with open(self.log_path, "a") as log:
                log.write(f"{datetime.now():%Y-%m-%d %H:%M:%S,%f}"[:-3] + f" SUPERVISOR: {line}\n")
        except OSError:
            pass  # the console line says it too

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def restart_policy(settings: CliSettings) -> RestartPolicy:
    """The children's restart policy of these settings (`child_restarts` in `child_restart_window_s`)."""
    return RestartPolicy(limit=settings.child_restarts, window_s=settings.child_restart_window_s)


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so a killed `scalebox run` leaves no agents behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Starts `scalebox` subcommands as children, restarts those that end unexpectedly (`supervise`), and stops
    them all together."""

    def __init__(self, log_dir: Path, env: dict[str, str], restarts: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log_dir = log_dir
        self.env = child_environment(env)
        self.restarts = restarts or RestartPolicy()
        self.clock = clock
        self.children: list[Child] = []
        self.command = [sys.executable, "-m", "scalebox_stream.cli.main"]
        """What runs a child's arguments: the `scalebox` command of this Python."""
        log_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen([*self.command, *args],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=True, preexec_fn=_die_with_parent)

    def start(self, name: str, args: list[str]) -> Child:
        """Start `scalebox ARGS` (`command`) with output to `<log_dir>/<name>.log`. The child gets
        SIGTERM when the thread that calls this ends (PR_SET_PDEATHSIG follows the thread, not the process): call it
        from one that outlives the child, and call `supervise` from the same thread."""
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, self._spawn(args, log_path), log_path, list(args))
        self.children.append(child)
        return child

    def supervise(self, say: Callable[[str], None] = log.warning) -> list[Child]:
        """One look at the children, meant for each poll of the run's wait loop (never blocking): restart those
        whose restart is due, and for each that ended unexpectedly since the last look, schedule its restart
        after the policy's backoff (saying so with `say` and in its log) or raise RuntimeError naming it and
        why it is not restarted, with its log's tail. An agent that stopped by itself (code 0) is left alone.
        Restarts happen on the calling thread, which PR_SET_PDEATHSIG ties them to: the one that started them.
        Returns the children restarted now (their `process` is new)."""
        now = self.clock()
        restarted: list[Child] = []
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts.append(now)
                    child.process = self._spawn(child.args, child.log_path)
                    child.note(f"restarted {child.name} (pid {child.process.pid})")
                    restarted.append(child)
                continue
            code = child.exited()
            if code is None:
                continue
            child.restarts = recent_restarts(child.restarts, now, self.restarts.window_s)
            decision = decide_restart(self.restarts, code, child.is_agent, child.restarts, now)
            if decision.action == "give_up":
                tail = child.log_tail()
                child.note(f"{child.name} exited with {describe_exit(code)}; not restarted: {decision.reason}")
                raise RuntimeError(f"{child.name} exited with {describe_exit(code)}, not restarted "
                                   f"({decision.reason}):\n{tail}")
            if decision.action == "restart":
                child.restart_at = now + decision.delay_s
                line = (f"{child.name} exited with {describe_exit(code)}; restarting it in {decision.delay_s:g} s "
                        f"({decision.reason})")
                child.note(line)
                say(line)
        return restarted

    def first_dead(self) -> Child | None:
        """A child that ended on its own, if any."""
        return next((c for c in self.children if c.exited() is not None), None)

    def wait_agents_gone(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the agent children to end by themselves (their app finished): True if none
        is left; `stop` deals with any that are."""
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.is_agent:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return False
        return True

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every child, wait up to `grace_s`, then SIGKILL their process groups (a pending restart is
        called off)."""
        for child in self.children:
            child.restart_at = None
            if child.exited() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
