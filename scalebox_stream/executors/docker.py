"""Runs a task attempt in a fresh Docker container (one container per attempt)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from scalebox_stream.executors.base import (
    DEFAULT_PATH,
    TIMEOUT_EXIT_CODE,
    ExecRequest,
    ExecResult,
    StartedCallback,
    prefixed_path,
)
from scalebox_stream.executors.docker_common import (
    CGROUP_V1_ROOT,
    CONTAINER_WORK_DIR,
    MANAGED_LABEL,
    VALID_NAME,
    Usage,
    apply_usage,
    cgroup_v1_usage,
    error_result,
    explain,
    files_in_image,
    name_in_use,
)
from scalebox_stream.executors.lifecycle import SlotScripts
from scalebox_stream.executors.lockdown import VolumeRefused, check_volumes, own_work_dir
from scalebox_stream.executors.output import DEFAULT_MAX_OUTPUT_BYTES, OutputCapture
from scalebox_stream.executors.process import now_us

__all__ = ["CONTAINER_WORK_DIR", "MANAGED_LABEL", "VALID_NAME", "DockerExecutor", "reap_orphans"]

CGROUP_PARENT = "scalebox"


class _TaskCgroup:
    """A per-attempt parent cgroup (cgroup v1, cgroupfs driver) that outlives the container's own.

    runc deletes a container's cgroup as soon as it stops, so its counters are gone before we could
    read them. Docker is asked to nest the container under `/scalebox/<name>`; v1 charges CPU, memory
    and block IO hierarchically, so this parent keeps the totals after the container has exited.
    """

    def __init__(self, name: str, root: Path = CGROUP_V1_ROOT) -> None:
        self.root = root
        self.rel = f"{CGROUP_PARENT}/{name}"

    @property
    def docker_parent(self) -> str:
        return "/" + self.rel

    def _read(self, controller: str, file: str) -> str | None:
        try:
            return (self.root / controller / self.rel / file).read_text()
        except OSError:
            return None

    def usage(self) -> Usage:
        return cgroup_v1_usage(self._read)

    def remove(self) -> None:
        """Removes the (empty) parent in every hierarchy; leftovers are harmless."""
        for d in self.root.glob(f"*/{self.rel}"):
            with contextlib.suppress(OSError):
                d.rmdir()


class DockerExecutor:
    """One container per attempt, through the Docker Engine API (`docker` SDK).

    The command is given as an argv list (never a shell). The host work dir is mounted at /work. The
    container is locked down by the request's `policy` (non-root, no new privileges, no capabilities but
    those asked for, a pids limit); a volume outside the allow-list ends the attempt as an error.
    The container is always removed, also on errors; Docker failures (missing image, API errors) come
    back as exit code 125 with `error` set.
    """

    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        network_mode: str = "none",
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        cgroup_stats: bool | None = None,
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.network_mode = network_mode
        self.max_output_bytes = max_output_bytes
        self._cgroup_stats = cgroup_stats
        self._active: dict[str, Container] = {}
        self._image_paths: dict[str, str] = {}
        self.scripts = SlotScripts()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> docker.DockerClient:
        """The engine's client when none was given (the podman executor's is its service's)."""
        return docker.from_env(max_pool_size=64)

    def _use_cgroups(self) -> bool:
        """Per-attempt parent cgroups need cgroup v1, the cgroupfs driver and root."""
        if self._cgroup_stats is None:
            v1 = (CGROUP_V1_ROOT / "cpuacct").is_dir() and (CGROUP_V1_ROOT / "memory").is_dir()
            driver = self.client.info().get("CgroupDriver") if v1 and os.geteuid() == 0 else None
            self._cgroup_stats = driver == "cgroupfs"
        return self._cgroup_stats

    def run(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        """Run the attempt, after the slot's setup (in a container of its own) if it has not run yet."""
        if (failed := self.scripts.ensure_setup(request, self._run_once)) is not None:
            return failed
        return self._run_once(request, on_started)

    def _run_once(self, request: ExecRequest, on_started: StartedCallback) -> ExecResult:
        started = now_us()
        container: Container | None = None
        cgroup = self._task_cgroup(request.name if VALID_NAME.fullmatch(request.name) else "_invalid")
        try:
            use_cgroups = self._use_cgroups()
            container = self._create(self._create_args(request, cgroup, use_cgroups))
            started = now_us()
            self._active[container.id] = container
            container.start()
            on_started(container.id)
            code, timed_out = self._wait(container, request.timeout_s)
            result = self._collect(container, code, timed_out, started, now_us(),
                                   max(self.max_output_bytes, 2 * (request.keep_output_bytes or 0)))
            if use_cgroups:
                apply_usage(result, cgroup.usage())
            return result
        except VolumeRefused as e:
            return _error(str(e), started, container)
        except docker.errors.ImageNotFound as e:
            return _error(f"image not found: {request.image}: {explain(e)}", started, container)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return _error(f"{self.name}: {explain(e)}", started, container)
        finally:
            if container is not None:
                self._active.pop(container.id, None)
                with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                    container.remove(force=True)
            cgroup.remove()

    def reap_orphans(self, labels: dict[str, str]) -> list[str]:
        """Force-removes managed containers with these labels (left by a crashed agent)."""
        return reap_orphans(labels, self.client, self._task_cgroup)

    def _task_cgroup(self, name: str) -> _TaskCgroup:
        """The per-attempt parent cgroup of container `name` (the podman executor's also holds conmon's)."""
        return _TaskCgroup(name)

    def files_in_image(self, image: str, paths: list[str]) -> set[str]:
        """Which of `paths` exist in `image` (see `docker_common.files_in_image`)."""
        return files_in_image(self.client.api, image, paths)

    def abort(self) -> None:
        """Kill every container still running an attempt."""
        for container in list(self._active.values()):
            with contextlib.suppress(docker.errors.APIError):
                container.kill()

    def close(self) -> None:
        """Run the slots' teardown (a container each), then close the client."""
        self.scripts.teardown_all(self._run_once)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _create_args(self, request: ExecRequest, cgroup: _TaskCgroup, use_cgroups: bool) -> dict[str, Any]:
        if not request.image:
            raise docker.errors.DockerException(f"the {self.name} executor needs an image")
        if not VALID_NAME.fullmatch(request.name):  # also keeps the cgroup path inside /scalebox
            raise docker.errors.DockerException(f"invalid container name {request.name!r}")
        policy = request.policy
        check_volumes(request.volumes, policy.allowed_roots())
        work_dir = Path(request.work_dir).resolve()
        own_work_dir(work_dir, policy)
        environment = {**request.env, "WORK_DIR": CONTAINER_WORK_DIR}
        if request.path_prefix:
            environment["PATH"] = prefixed_path(request.path_prefix,
                                                request.env.get("PATH") or self._image_path(request.image))
        args: dict[str, Any] = {
            "image": request.image,
            "command": list(request.argv[1:]) if request.argv else [],
            "environment": environment,
            "volumes": [f"{work_dir}:{CONTAINER_WORK_DIR}:rw", *request.agent_volumes, *request.volumes],
            "working_dir": CONTAINER_WORK_DIR,
            "name": request.name,
            "labels": {**request.labels, MANAGED_LABEL: "true"},
            "network_mode": request.network or self.network_mode,
            "user": policy.effective_user(),
            "stdin_open": False,
            "tty": False,
            **policy.host_config(),
        }
        if request.argv:  # the program is argv[0], whatever ENTRYPOINT the image names (Scalebox's agent image has one)
            args["entrypoint"] = list(request.argv[:1])
        if use_cgroups:
            args["cgroup_parent"] = cgroup.docker_parent
        return args

    def _image_path(self, image: str) -> str:
        """The PATH an image sets (remembered per image name: the agent runs one module's image)."""
        path = self._image_paths.get(image)
        if path is None:
            env = self.client.api.inspect_image(image).get("Config", {}).get("Env") or []
            path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
            self._image_paths[image] = path
        return path

    def _create(self, args: dict[str, Any]) -> Container:
        """Creates the container; a leftover with the same name (a crashed agent's) is removed first."""
        try:
            return self.client.containers.create(**args)
        except docker.errors.APIError as e:
            if not name_in_use(e):
                raise
        self.client.api.remove_container(args["name"], force=True)
        return self.client.containers.create(**args)

    @staticmethod
    def _wait(container: Container, timeout_s: float | None) -> tuple[int, bool]:
        """Waits for the exit; on timeout kills the container. Returns (exit code, timed out)."""
        limit = timeout_s if timeout_s is not None and timeout_s > 0 else None
        deadline = None if limit is None else time.monotonic() + limit
        try:
            return int(container.wait(timeout=limit)["StatusCode"]), False
        except requests.exceptions.RequestException:
            if deadline is None or time.monotonic() < deadline - 0.05:
                raise  # not our timeout: the daemon went away
        try:
            container.kill()
        except docker.errors.APIError:  # it ended on its own just now
            return int(container.wait(timeout=30)["StatusCode"]), False
        container.wait(timeout=30)
        return TIMEOUT_EXIT_CODE, True

    def _collect(self, container: Container, code: int, timed_out: bool, started: int, finished: int,
                 limit: int) -> ExecResult:
        container.reload()
        state = container.attrs.get("State", {})
        stdout, stderr = self._logs(container, True, limit), self._logs(container, False, limit)
        result = ExecResult(
            exit_code=code,
            stdout=stdout.value(),
            stderr=stderr.value(),
            stdout_total=stdout.total,
            stderr_total=stderr.total,
            timed_out=timed_out,
            signal=9 if timed_out else None,
            # Our clock, not State.StartedAt/FinishedAt: for short runs Docker may record the start
            # after the exit.
            started_at_us=started,
            finished_at_us=finished,
            container_id=container.id,
        )
        if state.get("OOMKilled"):
            result.error = "out of memory (OOM killed)"
        return result

    @staticmethod
    def _logs(container: Container, stdout: bool, limit: int) -> OutputCapture:
        capture = OutputCapture(limit)
        for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=False):
            capture.feed(chunk)
        return capture


def reap_orphans(labels: dict[str, str], client: docker.DockerClient | None = None,
                 task_cgroup: Callable[[str], _TaskCgroup] = _TaskCgroup) -> list[str]:
    """Force-removes containers labelled `scalebox.managed=true` plus `labels`; returns their names."""
    client = client or docker.from_env()
    filters = [f"{MANAGED_LABEL}=true", *(f"{k}={v}" for k, v in labels.items())]
    removed = []
    for c in client.containers.list(all=True, filters={"label": filters}):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)
            removed.append(c.name)
        task_cgroup(c.name).remove()
    return removed


def _error(message: str, started: int, container: Container | None) -> ExecResult:
    return error_result(message, started, container.id if container is not None else None)
