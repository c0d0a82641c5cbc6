"""Scalebox's slot lifecycle for executors that run one attempt at a time (process, docker and podman task mode):
a slot's `setup.sh` runs once before its first attempt, its `teardown.sh` once when the executor closes.

Both run in the module's runtime, as the executor runs attempts (a host process, or a container of the
module's image with the attempt's mounts, environment and network). In task mode a container lives for one
attempt only, so setup runs in a container of its own: what it leaves in the container (not in a mounted
directory) is gone when the first task starts; `container_mode: slot` shares one container between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from scalebox_stream.executors.base import ExecRequest, ExecResult, StartedCallback

log = logging.getLogger(__name__)

RunOnce = Callable[[ExecRequest, StartedCallback], ExecResult]
"""An executor's run of one program to its end (without the lifecycle)."""
SETUP_TIMEOUT_S = 600.0
TEARDOWN_TIMEOUT_S = 120.0
_TAIL = 2000
SETUP_FAILED = "setup failed"
"""How the error of an attempt whose slot setup failed begins (see `is_setup_failure`)."""


def _ignore(_container_id: str | None) -> None:
    """A started callback for the lifecycle's own runs (they report nothing)."""


def script_request(request: ExecRequest, argv: list[str], stage: str, timeout_s: float) -> ExecRequest:
    """`request` turned into the run of a slot script (`stage`: setup or teardown): same runtime, own name."""
    return replace(request, argv=list(argv), name=f"{request.name}-{stage}", timeout_s=timeout_s, setup=None,
                   teardown=None, labels={k: v for k, v in request.labels.items() if k != "scalebox.task_id"})


def output_tail(result: ExecResult) -> str:
    """The end of what a script printed (stderr, else stdout), or its error, for a message."""
    text = (result.stderr or result.stdout).decode(errors="replace").strip()
    return (result.error or "") + (": " if result.error and text else "") + (text[-_TAIL:] or "(no output)")


def is_setup_failure(result: ExecResult) -> bool:
    """Whether `result` is a slot's failed setup rather than the run of the program asked for: a check that
    meets one must not read it as a refusal (the task would be re-checked forever), but let the attempt run
    and fail with it, under the module's retry rules."""
    return bool(result.error and result.error.startswith(SETUP_FAILED + " ("))


class SlotScripts:
    """Which slots are set up, and the request each one's teardown runs with."""

    def __init__(self, setup_timeout_s: float = SETUP_TIMEOUT_S,
                 teardown_timeout_s: float = TEARDOWN_TIMEOUT_S) -> None:
        self.setup_timeout_s = setup_timeout_s
        self.teardown_timeout_s = teardown_timeout_s
        self._ready: dict[int, ExecRequest] = {}
        self._lock = threading.Lock()

    def ensure_setup(self, request: ExecRequest, run_once: RunOnce) -> ExecResult | None:
        """Run the slot's setup if it has not run yet: None when the slot is ready, else the failed setup's
        result (the attempt's result: the setup runs again before the slot's next attempt)."""
        with self._lock:
            if request.slot in self._ready:
                self._ready[request.slot] = request  # teardown runs with the latest runtime
                return None
        if request.setup:
            result = run_once(script_request(request, request.setup, "setup", self.setup_timeout_s), _ignore)
            if result.exit_code != 0:
                how = (f"timed out after {self.setup_timeout_s:g}s" if result.timed_out
                       else f"exit code {result.exit_code}")
                result.error = f"{SETUP_FAILED} ({' '.join(request.setup)}: {how}): {output_tail(result)}"
                result.exit_code = result.exit_code or 125
                return result
        with self._lock:
            self._ready[request.slot] = request
        return None

    def teardown_all(self, run_once: RunOnce) -> None:
        """Run every set-up slot's teardown (a failure is logged), in parallel; forget them all."""
        with self._lock:
            ready = list(self._ready.values())
            self._ready.clear()
        threads = [threading.Thread(target=self._teardown, args=(request, run_once), name=f"teardown-{request.slot}")
                   for request in ready if request.teardown]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _teardown(self, request: ExecRequest, run_once: RunOnce) -> None:
        assert request.teardown is not None
        request.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = run_once(script_request(request, request.teardown, "teardown", self.teardown_timeout_s), _ignore)
        except Exception:  # a teardown must not stop the others, nor the agent's close
            log.exception("teardown of slot %d failed", request.slot)
            return
        if result.exit_code != 0:
            log.warning("teardown of slot %d failed (exit code %d): %s", request.slot, result.exit_code,
                        output_tail(result))
