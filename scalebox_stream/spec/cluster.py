"""Cluster definitions: the hosts of a cluster, how to reach each, and how agents start there.

The shape is Scalebox's (`clusters.<name>.parameters`, `clusters.<name>.hosts.<host>` with `ip_addr`,
`role: head` and per-host `parameters`), read from the app file's `clusters:` and from YAML files under
`$SCALEBOX_HOME/clusters/` (a file there holds a `clusters:` mapping, like Scalebox's `mycluster.yaml`).
An app file's definition of a cluster replaces the home's definition of the same name.

Keys read (cluster `parameters` give every host's default; a host's `parameters` override them):

| key | meaning |
|---|---|
| `agent_start` | `local` (child processes), `ssh` or `slurm` (default: `local` for the head, `ssh` otherwise) |
| `uname`, `port` | SSH user and port (Scalebox's names) |
| `ssh_options` | extra `-o` options for the OpenSSH client (`IdentityFile=...`, `UserKnownHostsFile=...`) |
| `kafka_bootstrap` | the Kafka bootstrap servers as that host reaches them (default: the head's) |
| `scalebox_command` | how to run `scalebox` there (default `scalebox`) |
| `base_data_dir` | the cluster data directory (`${CLUSTER_DATA_DIR}`, `/cluster_data_root` in containers) |
| `local_data_root` | the host directory mapped to `/local_data_root` (default `/`) |
| `slurm_node`, `slurm_options` | the Slurm node a host's jobs run on, and extra `sbatch` arguments |
| `group_id` | a group name: a host list entry naming the group places slots on each of its hosts |
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .placement import DEFAULT_HEAD, SlotPlacement

StartMode = Literal["local", "ssh", "slurm"]
BUILT_IN = "built in"
"""The source of the cluster used when none is defined."""
_HOST_KEYS = {"agent_start", "uname", "port", "ssh_options", "kafka_bootstrap", "scalebox_command",
              "base_data_dir", "local_data_root", "slurm_node", "slurm_options", "group_id"}


class ClusterError(ValueError):
    """A cluster definition that cannot be used, with where it came from."""


class HostDef(BaseModel):
    """One host of a cluster: its name in host lists, where it is, and how agents start on it."""

    model_config = ConfigDict(frozen=True)

    name: str
    address: str | None = None
    """`ip_addr`: what SSH connects to (default: the host's name)."""
    role: str = ""
    start: StartMode = "ssh"
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    ssh_options: tuple[str, ...] = ()
    kafka: str | None = None
    scalebox_command: str = "scalebox"
    base_data_dir: str | None = None
    local_data_root: str = "/"
    slurm_node: str | None = None
    slurm_options: tuple[str, ...] = ()
    group: str | None = None

    @property
    def is_head(self) -> bool:
        return self.role.lower() == "head"

    @property
    def target(self) -> str:
        """`user@address` for the SSH client."""
        address = self.address or self.name
        return f"{self.user}@{address}" if self.user else address

    def scalebox_argv(self) -> list[str]:
        """`scalebox_command` as words (it may be a path with arguments, e.g. a venv's python -m ...)."""
        return shlex.split(self.scalebox_command)


class ClusterDef(BaseModel):
    """A cluster: its hosts by name (in definition order), the head first among equals."""

    model_config = ConfigDict(frozen=True)

    name: str
    hosts: dict[str, HostDef] = Field(default_factory=dict)
    base_data_dir: str | None = None
    source: str = ""
    """Where the definition was read (a file, or `app file`), for messages."""

    @property
    def head(self) -> str:
        return next((name for name, host in self.hosts.items() if host.is_head), DEFAULT_HEAD)

    def matching(self, entry: SlotPlacement) -> list[HostDef]:
        """The hosts a host-list entry names: by name or pattern, or every host of the group it names."""
        return [h for h in self.hosts.values()
                if entry.matches(h.name) or (h.group is not None and h.group == entry.host)]


def local_cluster(name: str, head: str = DEFAULT_HEAD) -> ClusterDef:
    """The cluster used when none is defined: only the head, this machine, running agents as children."""
    return ClusterDef(name=name, hosts={head: HostDef(name=head, role="head", start="local")}, source=BUILT_IN)


def _words(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value)
    raise ClusterError(f"{where}: expected a list of strings, got {value!r}")


def parse_cluster(name: str, definition: Any, source: str) -> ClusterDef:
    """A `clusters.<name>` mapping in Scalebox's shape; ClusterError naming the key otherwise."""
    where = f"{source}: clusters.{name}"
    if not isinstance(definition, Mapping):
        raise ClusterError(f"{where}: expected a mapping with parameters: and hosts:")
    defaults = definition.get("parameters") or {}
    hosts_raw = definition.get("hosts") or {}
    if not isinstance(defaults, Mapping) or not isinstance(hosts_raw, Mapping):
        raise ClusterError(f"{where}: parameters and hosts must be mappings")
    hosts: dict[str, HostDef] = {}
    for host_name, raw in hosts_raw.items():
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ClusterError(f"{where}.hosts.{host_name}: expected a mapping (ip_addr:, role:, parameters:)")
        own = raw.get("parameters") or {}
        if not isinstance(own, Mapping):
            raise ClusterError(f"{where}.hosts.{host_name}.parameters: expected a mapping")
        merged = {k: v for k, v in {**defaults, **own}.items() if k in _HOST_KEYS}
        role = str(raw.get("role") or "")
        try:
            hosts[str(host_name)] = HostDef(
                name=str(host_name), address=raw.get("ip_addr"), role=role,
                start=merged.get("agent_start") or ("local" if role.lower() == "head" else "ssh"),
                user=merged.get("uname"), port=int(merged.get("port", 22)),
                ssh_options=_words(merged.get("ssh_options"), f"{where}.hosts.{host_name}.ssh_options"),
                kafka=merged.get("kafka_bootstrap"),
                scalebox_command=str(merged.get("scalebox_command") or "scalebox"),
                base_data_dir=merged.get("base_data_dir"), local_data_root=str(merged.get("local_data_root") or "/"),
                slurm_node=merged.get("slurm_node"),
                slurm_options=_words(merged.get("slurm_options"), f"{where}.hosts.{host_name}.slurm_options"),
                group=None if merged.get("group_id") is None else str(merged["group_id"]))
        except (ValidationError, ValueError, TypeError) as exc:
            if isinstance(exc, ValidationError):
                error = exc.errors()[0]
                first = f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            else:
                first = str(exc)
            raise ClusterError(f"{where}.hosts.{host_name}: {first}") from None
    if sum(h.is_head for h in hosts.values()) > 1:
        raise ClusterError(f"{where}: more than one host has role: head")
    if hosts and not any(h.is_head for h in hosts.values()) and DEFAULT_HEAD not in hosts:
        hosts = {DEFAULT_HEAD: HostDef(name=DEFAULT_HEAD, role="head", start="local"), **hosts}
    base = defaults.get("base_data_dir")
    return ClusterDef(name=name, hosts=hosts, base_data_dir=None if base is None else str(base), source=source)


def parse_clusters(mapping: Any, source: str) -> dict[str, ClusterDef]:
    """Every cluster of a `clusters:` mapping."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ClusterError(f"{source}: clusters: expected a mapping of cluster name -> definition")
    return {str(name): parse_cluster(str(name), value, source) for name, value in mapping.items()}


def clusters_dir(home: Path) -> Path:
    """Where cluster definition files live: `$SCALEBOX_HOME/clusters/`."""
    return home / "clusters"


def home_clusters(home: Path) -> dict[str, ClusterDef]:
    """The clusters defined by the YAML files under `$SCALEBOX_HOME/clusters/` (sorted by file name)."""
    out: dict[str, ClusterDef] = {}
    directory = clusters_dir(home)
    files: Iterable[Path] = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []
    for file in files:
        try:
            data = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"{file}: {exc}") from None
        out.update(parse_clusters((data or {}).get("clusters") if isinstance(data, dict) else data, str(file)))
    return out


def resolve_cluster(name: str, home: Path, inline: Mapping[str, Any] | None = None) -> ClusterDef:
    """The definition of cluster `name`: the app file's, else the home's, else the built-in local one."""
    if inline and name in inline:
        return parse_cluster(name, inline[name], "app file")
    defined = home_clusters(home)
    return defined.get(name) or local_cluster(name)
