"""Runs task attempts in long-lived slot containers: one container per agent slot, one exec per task.

A module with `container_mode: slot` gets, on the first task of each agent slot, a container named
`sbx-slot-<app>-<module>-<agent>-<slot>` that only keeps itself alive (`sleep` under Docker's init, the
request's network), locked down like a per-task container (`executors.lockdown`: non-root, no new privileges,
capabilities dropped, a pids limit); setup, teardown and the tasks run as its user. Its setup script runs once
when it starts, its teardown script once when the agent closes the executor: the request's `setup`/`teardown`
(the agent gives `sbx-action setup`, which follows the module contract), else Scalebox's lookup here:
`ACTION_SETUP`/`ACTION_TEARDOWN`, else `/app/bin/...`, else `/app/share/bin/...`. Each task is one `docker exec`
of its argv (never a shell).

Work dir: a per-slot host dir (`<attempt dirs' parent>/.slots/<container>`) is mounted at `/work`.
Before a task it is emptied and given what the attempt's `request.work_dir` holds (what its check left), so
the program sees a fresh `/work` (= `$WORK_DIR`); after it, its entries are renamed into the attempt's own
`request.work_dir`, where the agent reads the perspective files.

After every task, the processes it left in the container are killed from the host (the container's
cgroup minus what ran before it: init, sleep, daemons started by setup.sh); on timeout the same kill
ends the exec (exit 124). CPU, memory peak and block I/O are the cgroup's counters around the task.
Without access to the container's cgroup (not root, or dockerd on another host) a timeout kills the
whole container instead, and leftovers of a normal run are not cleaned up.

`close()` runs teardown and removes the containers; `abort()` just removes them. Containers of agents
of this host that died without closing (SIGKILL) are removed when a new agent of the module starts
its first slot.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from scalebox_stream.executors.base import (
    DEFAULT_PATH,
    TIMEOUT_EXIT_CODE,
    ExecRequest,
    ExecResult,
    StartedCallback,
    prefixed_path,
)
from scalebox_stream.executors.docker_common import (
    CONTAINER_WORK_DIR,
    MANAGED_LABEL,
    apply_usage,
    error_result,
    explain,
    files_in_image,
    name_in_use,
)
from scalebox_stream.executors.lockdown import ContainerPolicy, VolumeRefused, check_volumes, own_work_dir
from scalebox_stream.executors.output import DEFAULT_MAX_OUTPUT_BYTES, OutputCapture
from scalebox_stream.executors.process import now_us
from scalebox_stream.executors.slot_cgroup import ContainerCgroup, usage_delta
from scalebox_stream.executors.slot_support import (
    SLOT_LABEL,
    action_from_env,
    agent_is_gone,
    empty_dir,
    env_list_to_dict,
    exec_failure,
    move_contents,
    slot_container_name,
    slot_env,
    slot_labels,
    slot_work_dir,
)

log = logging.getLogger(__name__)

KEEPALIVE = ["sleep", "2147483647"]
SCRIPT_DIRS = ("/app/bin", "/app/share/bin")
KILLED_WAIT_S = 10.0
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
_ERROR_TAIL = 2000


class SlotError(Exception):
    """The slot container could not be made ready (it exited, or setup.sh failed)."""

    def __init__(self, message: str, container_id: str | None = None) -> None:
        super().__init__(message)
        self.container_id = container_id


class _NotRunning(Exception):
    """The slot container is gone or stopped (no exec could be created in it)."""


@dataclass
class _Slot:
    """One live slot container."""

    name: str
    container_id: str
    key: tuple[str, tuple[str, ...], str, ContainerPolicy]
    host_dir: Path
    env: dict[str, str]
    cgroup: ContainerCgroup | None = None
    teardown: list[str] | None = None
    keep_pids: set[int] = field(default_factory=set)
    keep_sessions: set[int] = field(default_factory=set)
    broken: bool = False
    image_path: str = DEFAULT_PATH


@dataclass
class _ExecOutput:
    exit_code: int
    stdout: OutputCapture
    stderr: OutputCapture
    timed_out: bool
    started_at_us: int
    finished_at_us: int


class _Deadline:
    """Calls `on_timeout` once after `timeout_s` unless finished first."""

    def __init__(self, timeout_s: float | None, on_timeout: Callable[[], None]) -> None:
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._on_timeout = on_timeout
        self._timer = threading.Timer(timeout_s, self._fire) if timeout_s and timeout_s > 0 else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
        self._on_timeout()

    def finish(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


class DockerSlotExecutor:
    """One long-lived container per agent slot; each task is an exec in it (see the module docstring).

    Runs of one slot are serialised. Docker failures come back as exit code 125 with `error` set and
    make the slot's container be recreated on its next task.
    """

    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None, network_mode: str = "none",
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, setup_timeout_s: float = 600.0,
                 teardown_timeout_s: float = 120.0) -> None:
        self._client = client
        self.network_mode = network_mode
        self.max_output_bytes = max_output_bytes
        self.setup_timeout_s = setup_timeout_s
        self.teardown_timeout_s = teardown_timeout_s
        self._token = uuid.uuid4().hex[:6]
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._slot_locks: dict[int, threading.Lock] = {}
        self._reaped: set[tuple[str, str]] = set()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> docker.DockerClient:
        """The engine's client when none was given (the podman executor's is its service's)."""
        return docker.from_env(max_pool_size=64)

    def _host_options(self) -> dict[str, Any]:
        """More host-config options of a slot container (the podman executor's explicit ulimits)."""
        return {}

    # ----- the protocol -----------------------------------------------------------------------

    def run(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        started = now_us()
        with self._lock:
            slot_lock = self._slot_locks.setdefault(request.slot, threading.Lock())
        with slot_lock:
            try:
                return self._run_in_slot(request, on_started)
            except SlotError as e:
                return error_result(str(e), started, e.container_id)
            except VolumeRefused as e:
                return error_result(str(e), started, None)
            except docker.errors.ImageNotFound as e:
                return error_result(f"image not found: {request.image}: {explain(e)}", started, None)
            except DOCKER_ERRORS as e:
                with self._lock:
                    slot = self._slots.get(request.slot)
                if slot is not None:
                    self._discard(slot)
                return error_result(f"{self.name}: {explain(e)}", started, slot.container_id if slot else None)

    def files_in_image(self, image: str, paths: list[str]) -> set[str]:
        """Which of `paths` exist in `image` (see `docker_common.files_in_image`)."""
        return files_in_image(self.client.api, image, paths)

    def abort(self) -> None:
        """Kills every slot container (and so every running task); their `run` calls return."""
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            self._remove(slot)

    def close(self) -> None:
        """Runs teardown.sh in every slot container (in parallel), removes them, closes the client."""
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        threads = [threading.Thread(target=self._retire, args=(s,), name=f"teardown-{s.name}") for s in slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ----- slots ------------------------------------------------------------------------------

    def _slot_for(self, request: ExecRequest) -> _Slot:
        """The slot's container, started (and set up) if there is none or it no longer fits."""
        key = (request.image or "", (*request.agent_volumes, *request.volumes), request.network or self.network_mode,
               request.policy)
        with self._lock:
            slot = self._slots.get(request.slot)
        if slot is not None and slot.key != key:
            self._retire(slot)
            slot = None
        if slot is None:
            slot = self._start_slot(request, key)
            with self._lock:
                self._slots[request.slot] = slot
        return slot

    def _start_slot(self, request: ExecRequest, key: tuple[str, tuple[str, ...], str, ContainerPolicy]) -> _Slot:
        if not request.image:
            raise docker.errors.DockerException(f"the {self.name} executor needs an image")
        policy = request.policy
        check_volumes(request.volumes, policy.allowed_roots())
        api = self.client.api
        self._reap_dead_agents(request)
        name = slot_container_name(request, self._token)
        host_dir = slot_work_dir(request, name)
        empty_dir(host_dir)
        own_work_dir(host_dir, policy)
        host_config = api.create_host_config(
            binds=[f"{host_dir}:{CONTAINER_WORK_DIR}:rw", *request.agent_volumes, *request.volumes],
            network_mode=request.network or self.network_mode, init=True,
            **{**policy.host_config(), **self._host_options()})
        container_id = self._create(dict(
            image=request.image, entrypoint=KEEPALIVE[:1], command=KEEPALIVE[1:], name=name,
            labels=slot_labels(request), host_config=host_config, working_dir=CONTAINER_WORK_DIR,
            user=policy.effective_user(), environment={"WORK_DIR": CONTAINER_WORK_DIR}, stdin_open=False, tty=False))
        slot = _Slot(name, container_id, key, host_dir, slot_env(request))
        try:
            api.start(container_id)
            info = api.inspect_container(container_id)
            state = info.get("State", {})
            if not state.get("Running"):
                logs = api.logs(container_id, tail=20).decode(errors="replace").strip()
                raise SlotError(f"slot container {name} exited at once (exit {state.get('ExitCode')}); the image "
                                f"needs a `sleep` program to keep it alive: {logs}", container_id)
            slot.cgroup = ContainerCgroup.of_pid(int(state.get("Pid") or 0), container_id)
            image_env = env_list_to_dict(info.get("Config", {}).get("Env"))
            slot.image_path = image_env.get("PATH") or DEFAULT_PATH
            if request.setup is not None or request.teardown is not None:  # the module contract's (sbx-action)
                setup, slot.teardown = request.setup, request.teardown
            else:
                setup = action_from_env("ACTION_SETUP", request.env, image_env) or self._find_script(slot, "setup.sh")
                slot.teardown = (action_from_env("ACTION_TEARDOWN", request.env, image_env)
                                 or self._find_script(slot, "teardown.sh"))
            if setup:
                self._setup(slot, setup)
            if slot.cgroup is not None:
                slot.keep_pids, slot.keep_sessions = slot.cgroup.snapshot()
            return slot
        except BaseException:
            self._remove(slot)
            raise

    def _reap_dead_agents(self, request: ExecRequest) -> None:
        """Once per module: removes slot containers left by agents of this host that died (SIGKILL)."""
        app, module = request.labels.get("scalebox.app"), request.labels.get("scalebox.module")
        if not app or not module or (app, module) in self._reaped:
            return
        self._reaped.add((app, module))
        filters = {"label": [f"{MANAGED_LABEL}=true", SLOT_LABEL, f"scalebox.app={app}", f"scalebox.module={module}"]}
        for c in self.client.api.containers(all=True, filters=filters):
            if agent_is_gone((c.get("Labels") or {}).get("scalebox.agent", "")):
                name = (c.get("Names") or ["/"])[0].lstrip("/")
                log.info("removing slot container %s of an agent that is gone", name)
                with contextlib.suppress(*DOCKER_ERRORS):
                    self.client.api.remove_container(c["Id"], force=True)
                if name:
                    shutil.rmtree(slot_work_dir(request, name), ignore_errors=True)

    def _create(self, args: dict[str, Any]) -> str:
        """Creates the container; a leftover with the same name is removed first."""
        api = self.client.api
        try:
            return str(api.create_container(**args)["Id"])
        except docker.errors.APIError as e:
            if not name_in_use(e):
                raise
        api.remove_container(args["name"], force=True)
        return str(api.create_container(**args)["Id"])

    def _find_script(self, slot: _Slot, script: str) -> list[str] | None:
        """`/app/bin/<script>`, else `/app/share/bin/<script>`, if present in the container."""
        for directory in SCRIPT_DIRS:
            path = f"{directory}/{script}"
            try:
                stream, _ = self.client.api.get_archive(slot.container_id, path)
                for _chunk in stream:  # read it all, so the connection goes back to the pool
                    pass
                return [path]
            except docker.errors.NotFound:
                continue
        return None

    def _setup(self, slot: _Slot, argv: list[str]) -> None:
        out = self._exec(slot, argv, slot.env, self.setup_timeout_s, 1 << 16, None,
                         lambda: self._kill_container(slot))
        if out.exit_code != 0 or out.timed_out:
            how = f"timed out after {self.setup_timeout_s:g}s" if out.timed_out else f"exit code {out.exit_code}"
            raise SlotError(f"setup failed in slot container {slot.name} ({' '.join(argv)}: {how}): "
                            f"{_tail(out)}", slot.container_id)

    def _retire(self, slot: _Slot) -> None:
        """Runs teardown.sh (a failure is logged), then removes the container and its work dir."""
        self._forget(slot)
        if slot.teardown and not slot.broken:
            try:
                out = self._exec(slot, slot.teardown, slot.env, self.teardown_timeout_s, 1 << 16, None,
                                 lambda: self._kill_container(slot))
                if out.exit_code != 0:
                    log.warning("teardown in slot container %s failed (exit code %d%s): %s", slot.name,
                                out.exit_code, ", timed out" if out.timed_out else "", _tail(out))
            except (_NotRunning, *DOCKER_ERRORS) as e:
                log.warning("teardown in slot container %s failed: %s", slot.name, e)
        self._remove(slot)

    def _discard(self, slot: _Slot) -> None:
        """Forgets a broken slot and removes its container (no teardown)."""
        slot.broken = True
        self._forget(slot)
        self._remove(slot)

    def _forget(self, slot: _Slot) -> None:
        with self._lock:
            for index in [i for i, s in self._slots.items() if s is slot]:
                del self._slots[index]

    def _remove(self, slot: _Slot) -> None:
        slot.broken = True  # a run still waiting on an exec in it must not wait for ever
        with contextlib.suppress(*DOCKER_ERRORS):
            self.client.api.remove_container(slot.container_id, force=True)
        shutil.rmtree(slot.host_dir, ignore_errors=True)

    def _kill_container(self, slot: _Slot) -> None:
        slot.broken = True
        with contextlib.suppress(*DOCKER_ERRORS):
            self.client.api.kill(slot.container_id)

    # ----- tasks ------------------------------------------------------------------------------

    def _run_in_slot(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        """Runs the task in the slot's container; one that stopped since its last task is replaced once."""
        slot = self._slot_for(request)
        try:
            return self._run_task(slot, request, on_started)
        except _NotRunning:
            self._discard(slot)
        slot = self._slot_for(request)
        try:
            return self._run_task(slot, request, on_started)
        except _NotRunning:
            self._discard(slot)
            raise SlotError(f"slot container {slot.name} stopped right after it was started",
                            slot.container_id) from None

    def _run_task(self, slot: _Slot, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        empty_dir(slot.host_dir)
        move_contents(Path(request.work_dir), slot.host_dir)  # what a check left for the run (see TaskRunner.check)
        cgroup = slot.cgroup
        peak_valid = cgroup.reset_peak() if cgroup is not None else False
        before = cgroup.usage() if cgroup is not None else None
        limit = max(self.max_output_bytes, 2 * (request.keep_output_bytes or 0))
        env = {**request.env, "WORK_DIR": CONTAINER_WORK_DIR}
        if request.path_prefix:
            env["PATH"] = prefixed_path(request.path_prefix, request.env.get("PATH") or slot.image_path)
        try:
            out = self._exec(slot, list(request.argv), env, request.timeout_s, limit, on_started,
                             lambda: self._kill_task(slot, timed_out=True))
        finally:
            self._kill_task(slot, timed_out=False)
            move_contents(slot.host_dir, Path(request.work_dir))
        result = ExecResult(
            exit_code=TIMEOUT_EXIT_CODE if out.timed_out else out.exit_code,
            stdout=out.stdout.value(), stderr=out.stderr.value(),
            stdout_total=out.stdout.total, stderr_total=out.stderr.total,
            timed_out=out.timed_out, signal=9 if out.timed_out else None,
            started_at_us=out.started_at_us, finished_at_us=out.finished_at_us,
            container_id=slot.container_id)
        failure = None if out.timed_out else self._exec_failure(result)
        if failure is not None:
            result.exit_code, result.error = failure
        if cgroup is not None and before is not None:
            apply_usage(result, usage_delta(before, cgroup.usage(peak_valid)))
        if slot.broken:  # killed whole on a timeout: a fresh container for the next task
            self._discard(slot)
        return result

    @staticmethod
    def _exec_failure(result: ExecResult) -> tuple[int, str] | None:
        """The engine's own "could not exec the program" as (127 or 126, message), its text removed from
        the output; None for a program that ran. Docker writes it to the exec's stdout."""
        failure = exec_failure(result.exit_code, result.stdout)
        if failure is not None:
            result.stdout, result.stdout_total = b"", 0
        return failure

    def _kill_task(self, slot: _Slot, timed_out: bool) -> None:
        """Kills what the task runs or left; without the cgroup only a timeout can (whole container)."""
        if slot.cgroup is not None:
            slot.cgroup.kill_others(slot.keep_pids, slot.keep_sessions)
        elif timed_out:
            self._kill_container(slot)

    def _exec(self, slot: _Slot, argv: list[str], env: dict[str, str], timeout_s: float | None, limit: int,
              on_started: StartedCallback | None, on_timeout: Callable[[], None]) -> _ExecOutput:
        """One exec to its end: output demultiplexed and capped, the exit code from exec_inspect."""
        api = self.client.api
        try:
            exec_id = api.exec_create(slot.container_id, argv, environment=env, workdir=CONTAINER_WORK_DIR)["Id"]
        except docker.errors.APIError as e:
            if e.status_code in (404, 409):  # no such container / it is not running
                raise _NotRunning(explain(e)) from e
            raise
        stdout, stderr = OutputCapture(limit), OutputCapture(limit)
        stream = api.exec_start(exec_id, stream=True, demux=True)
        started = now_us()
        deadline = _Deadline(timeout_s, on_timeout)
        try:
            if on_started is not None:
                on_started(slot.container_id)
            for out, err in stream:
                if out:
                    stdout.feed(out)
                if err:
                    stderr.feed(err)
            finished = now_us()
            code = self._exit_code(exec_id, slot)
        finally:
            deadline.finish()
        return _ExecOutput(code, stdout, stderr, deadline.fired, started, finished)

    def _exit_code(self, exec_id: str, slot: _Slot) -> int:
        """The exec's exit code; waits while it still runs (its output can end before it does)."""
        delay, waited = 0.001, 0.0
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if slot.broken and waited > KILLED_WAIT_S:  # its container was killed: it is not coming back
                return 128 + 9
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)


def _tail(out: _ExecOutput) -> str:
    text = (out.stderr.value() or out.stdout.value()).decode(errors="replace").strip()
    return text[-_ERROR_TAIL:] or "(no output)"
