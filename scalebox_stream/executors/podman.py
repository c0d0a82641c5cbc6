"""Runs task attempts under Podman, through its Docker-compatible API service.

Podman has no daemon of its own; `podman system service` serves the Docker Engine API on a unix socket,
so the docker executors run unchanged against it with a client for that socket. What differs:

- Where the service is: `SCALEBOX_PODMAN_SOCKET` (a path or `unix://` URL), else Podman's own
  `CONTAINER_HOST`, else `/run/podman/podman.sock` as root and `$XDG_RUNTIME_DIR/podman/podman.sock`
  (rootless) otherwise. The executor never starts the service itself: it is a machine's (or a user's)
  service, like dockerd; a missing one is reported with the command that starts it.
- Resource limits: Podman gives containers RLIMIT_NOFILE 1048576 and a high RLIMIT_NPROC by default,
  which the OCI runtime cannot set where the service's own hard limits are lower, and every start then
  fails ("error setting rlimit type 7"). Every container therefore gets explicit `nofile` and `nproc`
  limits: `SCALEBOX_PODMAN_ULIMITS` (`nofile=1024:1024,nproc=4096:4096`), else the agent's own limits
  (what a process-executor task gets, and what Docker containers inherit from dockerd).
- conmon, Podman's per-container monitor, is placed in a `conmon` child of the container's cgroup parent:
  its counters are subtracted from the attempt's, and its cgroup is removed with the parent.
- Rootless (an agent that is not root talks to its own user's service): containers get `UsernsMode: keep-id`,
  so the container's default user, the agent's own uid:gid, is that same uid on the host too: the work dir
  and the tool channel belong to it already, and what the program writes there stays the agent's to read
  and remove. (The Docker SDK refuses any user namespace mode but "host", so the executors set it in the
  host config themselves.)
- A program that cannot be exec'd in a slot container is reported on the exec's stderr (Docker: stdout).
- Images are Podman's own store: short names resolve to `localhost/NAME` images first (images built by
  Docker move over with `docker save NAME | podman load`).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions
from docker.models.containers import Container, _create_container_args

from scalebox_stream.executors.base import ExecResult
from scalebox_stream.executors.docker import DockerExecutor, _TaskCgroup
from scalebox_stream.executors.docker_common import Usage, cgroup_v1_usage, name_in_use
from scalebox_stream.executors.docker_slots import DockerSlotExecutor

__all__ = ["PodmanExecutor", "PodmanSlotExecutor", "podman_client", "podman_problem", "podman_socket",
           "podman_ulimits"]

SOCKET_ENV = "SCALEBOX_PODMAN_SOCKET"
ULIMITS_ENV = "SCALEBOX_PODMAN_ULIMITS"
ROOT_SOCKET = "/run/podman/podman.sock"
API_VERSION = "1.41"  # the Docker API version Podman 4 serves
PID_MAX = Path("/proc/sys/kernel/pid_max")
_ULIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
_CAP = 1 << 20  # Podman's own default for both; never ask for more


def podman_socket(env: dict[str, str] | None = None, uid: int | None = None) -> str:
    """The API service's URL (`unix:///...`): settings first, then the rootful or rootless default."""
    env = dict(os.environ) if env is None else env
    uid = os.geteuid() if uid is None else uid
    value = env.get(SOCKET_ENV) or env.get("CONTAINER_HOST")
    if not value:
        runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
        value = ROOT_SOCKET if uid == 0 else f"{runtime}/podman/podman.sock"
    return value if "://" in value else f"unix://{value}"


def start_command(url: str) -> str:
    """The shell command that starts an API service on `url` (shown when none answers there)."""
    return f"podman system service --time=0 {url} &"


def podman_client(url: str | None = None, timeout_s: int = 60) -> docker.DockerClient:
    """A Docker SDK client of the Podman API service at `url` (default: `podman_socket()`)."""
    return docker.DockerClient(base_url=url or podman_socket(), version=API_VERSION, timeout=timeout_s,
                               max_pool_size=64)


def _parse_ulimits(text: str) -> list[docker.types.Ulimit]:
    """`nofile=1024:1024,nproc=4096` (soft[:hard]) as SDK ulimits; raises ValueError on a bad entry."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        if not name or not soft.isdigit() or not (hard or soft).isdigit():
            raise ValueError(f"{ULIMITS_ENV}: expected NAME=SOFT[:HARD], got {item!r}")
        out.append(docker.types.Ulimit(name=name.strip(), soft=int(soft), hard=int(hard or soft)))
    return out


def podman_ulimits(env: dict[str, str] | None = None) -> list[docker.types.Ulimit]:
    """Explicit container ulimits: `SCALEBOX_PODMAN_ULIMITS`, else the agent's own nofile and nproc limits
    (nproc no higher than the kernel's pid_max, which the Podman service caps itself at)."""
    env = dict(os.environ) if env is None else env
    if env.get(ULIMITS_ENV, "").strip():
        return _parse_ulimits(env[ULIMITS_ENV])
    try:
        pid_max = int(PID_MAX.read_text())
    except (OSError, ValueError):
        pid_max = _CAP
    out = []
    for name, which in _ULIMITS.items():
        soft, hard = resource.getrlimit(which)
        cap = min(_CAP, pid_max) if name == "nproc" else _CAP
        hard = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
        out.append(docker.types.Ulimit(name=name, soft=soft, hard=hard))
    return out


def podman_problem(url: str | None = None, timeout_s: int = 5) -> str | None:
    """Why the podman executor cannot run here (None: it can). For `app validate`, before any agent starts:
    the API service must answer at the configured socket and be Podman's."""
    url = url or podman_socket()
    try:
        _parse_ulimits(os.environ.get(ULIMITS_ENV, ""))
    except ValueError as e:
        return str(e)
    path = url.removeprefix("unix://") if url.startswith("unix://") else None
    if path is not None and not Path(path).exists():
        return (f"no Podman API service at {url} (start it with `{start_command(url)}`, or set "
                f"{SOCKET_ENV} to its socket)")
    try:
        client = podman_client(url, timeout_s)
        try:
            version = client.version()
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        return f"the Podman API service at {url} does not answer ({e}); start it with `{start_command(url)}`"
    names = [str(c.get("Name", "")) for c in version.get("Components") or []]
    if not any("podman" in n.lower() for n in names):
        return f"{url} is not a Podman API service (it is {', '.join(names) or 'another engine'})"
    return None


EXEC_FAILED = (b"OCI runtime", b"OCI permission denied")
"""Podman's own words for a program it could not exec (not found: "OCI runtime attempted to invoke a command
that was not found"; not executable: "OCI permission denied")."""
CONMON_CGROUP = "conmon"


class PodmanTaskCgroup(_TaskCgroup):
    """The per-attempt parent cgroup under Podman, minus its `conmon` child (see the module docstring)."""

    def _read_conmon(self, controller: str, file: str) -> str | None:
        return self._read(controller, f"{CONMON_CGROUP}/{file}")

    def usage(self) -> Usage:
        total, conmon = super().usage(), cgroup_v1_usage(self._read_conmon)

        def minus(a: Any, b: Any) -> Any:
            return a if a is None or b is None else max(type(a)(0), a - b)

        return Usage(cpu_user_s=minus(total.cpu_user_s, conmon.cpu_user_s),
                     cpu_system_s=minus(total.cpu_system_s, conmon.cpu_system_s),
                     peak_memory_bytes=minus(total.peak_memory_bytes, conmon.peak_memory_bytes),
                     read_bytes=minus(total.read_bytes, conmon.read_bytes),
                     write_bytes=minus(total.write_bytes, conmon.write_bytes))

    def remove(self) -> None:
        """Removes conmon's cgroup, then the parent; conmon may still be exiting, so a few tries."""
        for _ in range(20):
            for d in self.root.glob(f"*/{self.rel}/{CONMON_CGROUP}"):
                with contextlib.suppress(OSError):
                    d.rmdir()
            if not any(self.root.glob(f"*/{self.rel}/{CONMON_CGROUP}")):
                break
            time.sleep(0.05)
        super().remove()


def podman_exec_failure(result: ExecResult) -> tuple[int, str] | None:
    """Podman's "could not exec the program" in a slot container as (127 or 126, message): that exit code
    with Podman's own error (`Error: ... OCI ...`, see EXEC_FAILED) opening the exec's stderr, which is then
    cleared."""
    first = result.stderr.split(b"\n", 1)[0]
    if result.exit_code not in (126, 127) or not first.startswith(b"Error: ") \
            or not any(marker in first for marker in EXEC_FAILED):
        return None
    result.stderr, result.stderr_total = b"", 0
    return result.exit_code, first.decode(errors="replace").removeprefix("Error: ").strip()


KEEP_ID = "keep-id"


def rootless() -> bool:
    """Whether this agent's Podman is rootless: an agent that is not root can only talk to its own user's
    service (root's socket is root's alone)."""
    return os.geteuid() != 0


class _PodmanClient:
    """What both podman executors share: the client of the Podman service and the explicit ulimits."""

    name = "podman"
    _client: docker.DockerClient | None

    def _init_podman(self, client: docker.DockerClient | None, url: str | None,
                     ulimits: list[docker.types.Ulimit] | None) -> None:
        self.url = url or podman_socket()
        self.ulimits = podman_ulimits() if ulimits is None else ulimits
        self._client = client

    def _new_client(self) -> docker.DockerClient:
        return podman_client(self.url)


class PodmanExecutor(_PodmanClient, DockerExecutor):
    """One container per attempt under Podman (the docker executor through Podman's API service)."""

    def __init__(self, client: docker.DockerClient | None = None, url: str | None = None,
                 ulimits: list[docker.types.Ulimit] | None = None, **kw: Any) -> None:
        DockerExecutor.__init__(self, client=client, **kw)
        self._init_podman(client, url, ulimits)

    def _create_args(self, request: Any, cgroup: Any, use_cgroups: bool) -> dict[str, Any]:
        return {**super()._create_args(request, cgroup, use_cgroups), "ulimits": list(self.ulimits)}

    def _task_cgroup(self, name: str) -> _TaskCgroup:
        return PodmanTaskCgroup(name)

    def _create(self, args: dict[str, Any]) -> Container:
        """As Docker's, plus `keep-id` when rootless (see the module docstring), through the low-level API."""
        if not rootless():
            return super()._create(args)
        api = self.client.api
        kwargs = _create_container_args({**args, "version": api._version})  # what containers.create does
        kwargs["host_config"]["UsernsMode"] = KEEP_ID
        try:
            container_id = api.create_container(**kwargs)["Id"]
        except docker.errors.APIError as e:
            if not name_in_use(e):
                raise
            api.remove_container(kwargs["name"], force=True)
            container_id = api.create_container(**kwargs)["Id"]
        return self.client.containers.get(container_id)


class PodmanSlotExecutor(_PodmanClient, DockerSlotExecutor):
    """One long-lived container per agent slot under Podman (the docker slot executor, Podman's service)."""

    def __init__(self, client: docker.DockerClient | None = None, url: str | None = None,
                 ulimits: list[docker.types.Ulimit] | None = None, **kw: Any) -> None:
        DockerSlotExecutor.__init__(self, client=client, **kw)
        self._init_podman(client, url, ulimits)

    def _host_options(self) -> dict[str, Any]:
        return {"ulimits": list(self.ulimits)}

    def _create(self, args: dict[str, Any]) -> str:
        """As Docker's, plus `keep-id` when rootless (see the module docstring)."""
        if rootless():
            args["host_config"]["UsernsMode"] = KEEP_ID
        return super()._create(args)

    @staticmethod
    def _exec_failure(result: ExecResult) -> tuple[int, str] | None:
        return podman_exec_failure(result)
