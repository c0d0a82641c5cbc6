"""Child processes (agents, projector) started by `scalebox run`, each logging to its own file."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scalebox_stream.config import child_environment


@dataclass
class Child:
    """One supervised child process."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def exited(self) -> int | None:
        """The exit code if the child has ended, else None."""
        return self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so a killed `scalebox run` leaves no agents behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Starts `scalebox` subcommands as children and stops them all together."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = child_environment(env)
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str]) -> Child:
        """Start `python -m scalebox_stream.cli.main ARGS` with output to `<log_dir>/<name>.log`. The child gets
        SIGTERM when the thread that calls this ends (PR_SET_PDEATHSIG follows the thread, not the process): call it
        from one that outlives the child."""
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "scalebox_stream.cli.main", *args],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def first_dead(self) -> Child | None:
        """A child that ended on its own, if any."""
        return next((c for c in self.children if c.exited() is not None), None)

    def first_failed(self) -> Child | None:
        """A child that ended on its own, other than an agent that stopped cleanly (code 0: its app finished or
        it was idle past its module's limit), if any."""
        return next((c for c in self.children if (code := c.exited()) is not None
                     and not (code == 0 and c.name.startswith("agent-"))), None)

    def wait_agents_gone(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the agent children to end by themselves (their app finished): True if none
        is left; `stop` deals with any that are."""
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.name.startswith("agent-"):
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return False
        return True

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every child, wait up to `grace_s`, then SIGKILL their process groups."""
        for child in self.children:
            if child.exited() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
