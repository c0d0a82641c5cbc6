"""How module containers are locked down: the user, capabilities, limits, and which host paths may be mounted.

Defaults (see docs/security.md): a non-root user (`DEFAULT_USER`; an agent that is not root uses its own uid),
`no-new-privileges`, every capability dropped but a module's `cap_add`, at most `DEFAULT_PIDS` processes, and
volume sources only under the operator's allow-list (`SCALEBOX_VOLUME_ALLOW`, colon-separated directories;
unset: `DEFAULT_VOLUME_ROOTS` plus the app directory, the cluster data directory and the Scalebox home). `/` and
the Docker socket are refused unless the list names them exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_USER = "1000:1000"
DEFAULT_PIDS = 512
VOLUME_ALLOW_ENV = "SCALEBOX_VOLUME_ALLOW"
DEFAULT_VOLUME_ROOTS = ("/data", "/scratch", "/tmp", "/dev/shm")
"""Where data usually lives on the hosts Scalebox runs on, plus the scratch places every program may use."""
DOCKER_SOCKETS = frozenset({"/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock",
                            "/var/run/podman/podman.sock"})
"""Engine sockets: whoever can reach one is root on the host."""
TMPFS_OPTIONS = "rw,nosuid,nodev,size=256m"


@dataclass(frozen=True)
class ContainerPolicy:
    """What confines one module's containers (hashable: a slot container is recreated when it changes)."""

    user: str | None = None
    """`uid:gid`; None: `DEFAULT_USER`, or the agent's own uid:gid when the agent is not root."""
    cap_add: tuple[str, ...] = ()
    pids: int = DEFAULT_PIDS
    memory_bytes: int | None = None
    cpus: float | None = None
    read_only_rootfs: bool = False
    volume_roots: tuple[str, ...] | None = None
    """Host directories volume sources may lie in; None: `volume_roots()` of the agent's environment."""

    def effective_user(self) -> str:
        if self.user is not None:
            return self.user
        return DEFAULT_USER if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}"

    def ids(self) -> tuple[int, int]:
        uid, _, gid = self.effective_user().partition(":")
        return int(uid), int(gid or uid)

    def host_config(self) -> dict[str, Any]:
        """Docker HostConfig arguments (the same names in `containers.create` and `api.create_host_config`)."""
        args: dict[str, Any] = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
                                "pids_limit": self.pids}
        if self.cap_add:
            args["cap_add"] = list(self.cap_add)
        if self.memory_bytes is not None:
            args["mem_limit"] = self.memory_bytes
            args["memswap_limit"] = self.memory_bytes  # no swap beyond the limit
        if self.cpus is not None:
            args["nano_cpus"] = int(self.cpus * 1e9)
        if self.read_only_rootfs:
            args["read_only"] = True
            args["tmpfs"] = {"/tmp": TMPFS_OPTIONS}
        return args

    def allowed_roots(self) -> tuple[str, ...]:
        return self.volume_roots if self.volume_roots is not None else volume_roots()


class VolumeRefused(Exception):
    """A volume whose host source the allow-list does not cover."""


def volume_roots(extra: Iterable[Path | str | None] = (), env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The allow-list: the operator's `SCALEBOX_VOLUME_ALLOW` if set (then exactly that), else the defaults
    plus `extra` (the app directory, the cluster data directory, the Scalebox home)."""
    env = os.environ if env is None else env
    text = env.get(VOLUME_ALLOW_ENV, "").strip()
    if text:
        return tuple(p for p in (p.strip() for p in text.split(":")) if p)
    return tuple(dict.fromkeys((*DEFAULT_VOLUME_ROOTS, *(str(p) for p in extra if p))))


def _real(path: str) -> str:
    return os.path.realpath(path)  # a link to / or to the socket counts as what it points at


def refused_volume(volume: str, roots: Iterable[str]) -> str | None:
    """Why `volume` (`src:dst[:mode]`) may not be mounted, or None. A named volume (no `/` in its source) is
    Docker's own storage and passes; a host path must lie in an allowed root; `/` and an engine socket only
    when a root names them exactly."""
    source = volume.split(":", 1)[0]
    if "/" not in source:
        return None
    roots = [r for r in roots if r.startswith("/")]
    real = _real(source)
    named = {os.path.normpath(r) for r in roots} | {_real(r) for r in roots}
    if real == "/" or real in DOCKER_SOCKETS or os.path.normpath(source) in DOCKER_SOCKETS:
        if real in named or os.path.normpath(source) in named:
            return None
        what = "the host's root file system" if real == "/" else "the container engine's socket"
        return (f"volume {volume!r} refused: it mounts {what}; only an operator can allow it, by naming "
                f"{os.path.normpath(source)} in {VOLUME_ALLOW_ENV}")
    for root in roots:
        base = _real(root)
        if base == "/" or real == base or real.startswith(base.rstrip("/") + "/"):
            return None
    return (f"volume {volume!r} refused: {real} is outside the allowed directories ({':'.join(roots) or 'none'}); "
            f"an operator can widen {VOLUME_ALLOW_ENV}")


def check_volumes(volumes: Iterable[str], roots: Iterable[str]) -> None:
    """Raises VolumeRefused for the first volume the allow-list refuses."""
    roots = tuple(roots)
    for volume in volumes:
        if (why := refused_volume(volume, roots)) is not None:
            raise VolumeRefused(why)


def own_work_dir(path: Path, policy: ContainerPolicy, mode: int = 0o777) -> None:
    """Makes a host path (the work dir; the tool channel's directory and FIFO) readable and writable by the
    container's user: chown when the agent is root; otherwise, for a user other than the agent's own, `mode`
    (world-writable: the agent cannot give the path away)."""
    uid, gid = policy.ids()
    if os.geteuid() == 0:
        os.chown(path, uid, gid, follow_symlinks=False)
    elif uid != os.geteuid():
        os.chmod(path, mode)
