"""Where `scalebox run` starts agents: each module's host list read against its cluster's hosts (pure), and
the record of the agents a run started (so `scalebox logs` and `host list` can find them)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scalebox_stream.spec.cluster import BUILT_IN, ClusterDef, StartMode
from scalebox_stream.spec.model import AppSpec

if TYPE_CHECKING:
    from scalebox_stream.launch.children import Child


class PlacementError(ValueError):
    """A host list that names no host of the cluster."""


@dataclass(frozen=True)
class AgentPlan:
    """One agent to start: `slots` slots of `module` on `host`, started the host's way."""

    module: str
    host: str
    slots: int
    start: StartMode
    head: bool


def plan_agents(spec: AppSpec, cluster: ClusterDef, modules: list[str]) -> list[AgentPlan]:
    """One agent per (module, host) with slots there, in module then host order. A module whose host list
    names only the head (the default) gets one agent on the head, as before clusters existed; an entry
    naming no host of a defined cluster is a PlacementError (a typo would otherwise start nothing)."""
    if cluster.source == BUILT_IN:  # no cluster defined: one agent here per module, as before clusters
        return [AgentPlan(name, spec.head_host, spec.modules[name].slots, "local", True) for name in modules]
    head = cluster.head
    out: list[AgentPlan] = []
    for name in modules:
        slots: dict[str, int] = {}
        for entry in spec.modules[name].placement:
            hosts = cluster.matching(entry)
            if not hosts and entry.matches(head):
                slots[head] = slots.get(head, 0) + entry.count
                continue
            if not hosts:
                raise PlacementError(f"module {name!r}: slots entry {entry.host!r} names no host of cluster "
                                     f"{cluster.name!r} (hosts: {', '.join(cluster.hosts)}; defined in "
                                     f"{cluster.source})")
            for host in hosts:
                slots[host.name] = slots.get(host.name, 0) + entry.count
        if not slots:
            slots[head] = spec.modules[name].slots
        for host_name, count in slots.items():
            host = cluster.hosts.get(host_name)
            start: StartMode = "local" if host is None or host_name == head else host.start
            out.append(AgentPlan(name, host_name, count, start, host_name == head))
    return out


def agent_argv(spec: AppSpec, app_file: Path, env_files: tuple[Path, ...] | list[Path], plan: AgentPlan
               ) -> list[str]:
    """The `scalebox` arguments of one planned agent (the host named unless it is the head)."""
    env_args = [arg for env in env_files for arg in ("-e", str(Path(env).absolute()))]
    return ["agent", "--app", spec.name, "--module", plan.module, "--app-file", str(app_file.absolute()),
            *env_args, "--slots", str(plan.slots), *([] if plan.head else ["--host", plan.host])]


def agent_log_name(plan: AgentPlan) -> str:
    """The log file stem of an agent: `agent-<module>` on the head, `agent-<module>@<host>` elsewhere."""
    return f"agent-{plan.module}" if plan.head else f"agent-{plan.module}@{plan.host}"


@dataclass(frozen=True)
class StartedAgent:
    """An agent a run started, and where to find it: a local log, an SSH host's pid and log, a Slurm job."""

    module: str
    host: str
    start: StartMode
    log: str
    ref: str = ""
    """The process id (local, ssh) or Slurm job id."""


def started_here(plan: AgentPlan, child: Child) -> StartedAgent:
    """The record of an agent started as a child of this process, with its current process id (a restart
    changes it)."""
    return StartedAgent(plan.module, plan.host, "local", str(child.log_path), str(child.process.pid))


@dataclass
class AgentRecord:
    """The agents a run or an app server started: those here (children, whose pid a restart changes) and those
    away (over SSH, as Slurm jobs), written to `<log_dir>/agents.json`."""

    log_dir: Path
    cluster: ClusterDef
    here: list[tuple[AgentPlan, Child]]
    away: list[StartedAgent]

    def write(self) -> list[StartedAgent]:
        """Write the record; the agents in it."""
        agents = [*(started_here(plan, child) for plan, child in self.here), *self.away]
        write_record(self.log_dir, agents, self.cluster)
        return agents

    def after_restarts(self, restarted: list[Child]) -> None:
        """Write the record again if an agent among `restarted` (from `Children.supervise`) has a new pid."""
        if any(child.is_agent for child in restarted):
            self.write()


def record_path(log_dir: Path) -> Path:
    return log_dir / "agents.json"


def write_record(log_dir: Path, agents: list[StartedAgent], cluster: ClusterDef) -> None:
    """Write the run's agents and the cluster they run on to `<log_dir>/agents.json` (replacing the previous
    run's): `scalebox logs` reads them wherever they ran."""
    log_dir.mkdir(parents=True, exist_ok=True)
    record = {"cluster": cluster.model_dump(mode="json"), "agents": [asdict(a) for a in agents]}
    record_path(log_dir).write_text(json.dumps(record, indent=1))


def read_record(log_dir: Path) -> tuple[ClusterDef | None, list[StartedAgent]]:
    """The cluster and the agents of the last run of an app (None and [] if none was recorded)."""
    try:
        record = json.loads(record_path(log_dir).read_text())
        return (ClusterDef.model_validate(record["cluster"]),
                [StartedAgent(**item) for item in record["agents"]])
    except (OSError, ValueError, TypeError, KeyError):
        return None, []
