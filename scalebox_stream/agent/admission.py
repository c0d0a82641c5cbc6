"""Admission control on the agent's host: the module's check command, disk limits, the per-host limit.

Runs in a slot thread just before an attempt starts. A refused task goes back to the agent, which
re-checks it later with backoff while other tasks use the slot.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from scalebox_stream.events import Event
from scalebox_stream.policy.admission import ADMIT, Verdict, check_verdict, free_space_verdict, quota_verdict
from scalebox_stream.spec.model import ModuleSpec

CHECK_TIMEOUT_S = 60.0


def directory_size(path: str) -> int:
    """Total size of the files under `path` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class HostSlot:
    """One of `limit` host-wide tokens, held with flock so every agent on the host shares them."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        directory.mkdir(parents=True, exist_ok=True)

    def acquire(self) -> int | None:
        """A held token (a file descriptor), or None if all are taken."""
        for index in range(self.limit):
            fd = os.open(self.directory / f"token-{index}", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @staticmethod
    def release(fd: int) -> None:
        """Give a token back (closing the file releases the lock)."""
        os.close(fd)


class Admission:
    """The admission checks of one module on this host."""

    def __init__(self, module: ModuleSpec, env: dict[str, str], lock_dir: Path,
                 runtime_check: Callable[[Event, int], Verdict] | None = None,
                 gate: Callable[[], str | None] | None = None) -> None:
        self.module = module
        self.env = env
        self.runtime_check = runtime_check
        """The module's check script, run in its runtime (the module contract's check.sh), after the rules."""
        self.gate = gate
        """Takes one from the module's wait_semaphore, blocking while it is not positive; None or why not."""
        self.host_slots = (HostSlot(lock_dir, module.max_tasks_per_host)
                           if module.max_tasks_per_host else None)

    @property
    def active(self) -> bool:
        """True if the module has any admission rule."""
        m = self.module
        return bool(m.check or m.dir_quota_gb or m.free_space_gb or m.max_tasks_per_host or self.runtime_check
                    or self.gate)

    def check(self, task: Event, slot: int = 0) -> tuple[Verdict, int | None]:
        """Run every check (for the attempt in `slot`); on admission, also return the host token to release
        after the run."""
        m = self.module
        verdict = quota_verdict(m.dir_quota_gb, {d: directory_size(d) for d in m.dir_quota_gb})
        if verdict.admitted:
            verdict = free_space_verdict(m.free_space_gb, {d: _free(d) for d in m.free_space_gb})
        if verdict.admitted and m.check:
            verdict = self._run_check(task)
        if not verdict.admitted:
            return verdict, None
        token = None
        if self.host_slots is not None:
            token = self.host_slots.acquire()
            if token is None:
                return Verdict(False, f"max_tasks_per_host {m.max_tasks_per_host} reached on this host"), None
        if self.runtime_check is not None:  # a check script may take something (a semaphore) when it admits
            verdict = self.runtime_check(task, slot)
            if not verdict.admitted:
                self.release(token)
                return verdict, None
        if self.gate is not None and (why := self.gate()) is not None:  # last: it takes a permit
            self.release(token)
            return Verdict(False, f"wait_semaphore {m.wait_semaphore}: {why}"), None
        return ADMIT, token

    def release(self, token: int | None) -> None:
        """Release a host token taken by `check`."""
        if token is not None:
            HostSlot.release(token)

    def _run_check(self, task: Event) -> Verdict:
        argv = [*self.module.check, task.payload["body"], json.dumps(task.payload["headers"], separators=(",", ":"))]
        env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **self.env}
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Verdict(False, f"check could not run: {exc}")
        return check_verdict(done.returncode, done.stdout + done.stderr)


def _free(directory: str) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 0
