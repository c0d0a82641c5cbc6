"""The agents a run starts away from this machine's children: over SSH (one session per host, hosts in
parallel) and as Slurm jobs; stopped together when the run ends."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scalebox_stream.kafka.security import forwarded_env
from scalebox_stream.launch import slurm, ssh
from scalebox_stream.launch.placement import AgentPlan, StartedAgent, agent_log_name
from scalebox_stream.spec.cluster import ClusterDef


def remote_log_dir(app: str) -> str:
    """Where an SSH host keeps the logs of an app's agents (its own Scalebox home)."""
    return f"${{SCALEBOX_HOME:-$HOME/.scalebox}}/logs/{app}"


class RemoteAgents:
    """Starts the SSH and Slurm agents of a run and stops them all."""

    def __init__(self, cluster: ClusterDef, app: str, log_dir: Path, kafka: str) -> None:
        self.cluster = cluster
        self.app = app
        self.log_dir = log_dir
        self.kafka = kafka
        self.started: list[StartedAgent] = []

    def env_for(self, host: str) -> dict[str, str]:
        """The environment of an agent on `host`: the Kafka bootstrap as that host reaches it, where this
        machine's client security for that Kafka is (`kafka.security.forwarded_env`: file paths, which the
        host must see at the same place, never a secret), and the state topics' prefix if not the default."""
        env = {**forwarded_env(self.kafka), "SCALEBOX_KAFKA": self.cluster.hosts[host].kafka or self.kafka}
        if prefix := os.environ.get("SCALEBOX_STATE_PREFIX"):  # the state topics this machine uses
            env["SCALEBOX_STATE_PREFIX"] = prefix
        return env

    def start(self, plans: Sequence[AgentPlan], args_of: Callable[[AgentPlan], list[str]]) -> list[StartedAgent]:
        """Start every plan (none local); on any failure stop what started and raise RuntimeError."""
        by_host: dict[str, list[AgentPlan]] = {}
        for plan in plans:
            if plan.start == "ssh":
                by_host.setdefault(plan.host, []).append(plan)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(16, len(by_host)))) as pool:
                futures = [pool.submit(self._start_ssh, host, mine, args_of) for host, mine in by_host.items()]
            errors = [future.exception() for future in futures if future.exception() is not None]
            for future in futures:
                if future.exception() is None:
                    self.started.extend(future.result())
            if errors:
                raise errors[0]
            for plan in plans:
                if plan.start == "slurm":
                    self.started.append(self._submit(plan, args_of(plan)))
        except (ssh.SshError, slurm.SlurmError) as exc:
            self.stop(5.0)
            raise RuntimeError(str(exc)) from None
        return list(self.started)

    def _start_ssh(self, host: str, plans: list[AgentPlan], args_of: Callable[[AgentPlan], list[str]]
                   ) -> list[StartedAgent]:
        agents = [ssh.RemoteAgent(agent_log_name(p), args_of(p), self.env_for(host)) for p in plans]
        pids = ssh.start_agents(self.cluster.hosts[host], remote_log_dir(self.app), agents)
        return [StartedAgent(p.module, host, "ssh", log, pid) for p, (pid, log) in zip(plans, pids, strict=True)]

    def _submit(self, plan: AgentPlan, args: list[str]) -> StartedAgent:
        log = self.log_dir / f"{agent_log_name(plan)}.log"
        host = self.cluster.hosts[plan.host]
        job = slurm.submit(host, slurm.job_name(self.app, plan.module, plan.host), args, self.env_for(plan.host),
                           str(log))
        return StartedAgent(plan.module, plan.host, "slurm", str(log), job)

    def wait_gone(self, timeout_s: float, poll_s: float = 1.0) -> bool:
        """Wait up to `timeout_s` for every agent started to end by itself (their app finished): True if none is
        left (SSH hosts asked for their pids, Slurm for its jobs); `stop` deals with any that are."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.started = self._still_running()
            if not self.started:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)

    def _still_running(self) -> list[StartedAgent]:
        """The agents started that still run (those of a host that does not answer count as running)."""
        pids: dict[str, list[str]] = {}
        for agent in self.started:
            if agent.start == "ssh":
                pids.setdefault(agent.host, []).append(agent.ref)
        alive: set[tuple[str, str]] = set()
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(pids)))) as pool:
            futures = {host: pool.submit(ssh.running, self.cluster.hosts[host], ids) for host, ids in pids.items()}
            for host, future in futures.items():
                alive |= {(host, pid) for pid in future.result()}
        jobs = [a.ref for a in self.started if a.start == "slurm"]
        try:
            queued = slurm.queued(jobs)
        except slurm.SlurmError:
            queued = set(jobs)
        return [a for a in self.started if (a.host, a.ref) in alive or (a.start == "slurm" and a.ref in queued)]

    def stop(self, grace_s: float) -> None:
        """Stop every agent started: SSH hosts in parallel, Slurm jobs cancelled and waited for."""
        pids: dict[str, list[str]] = {}
        for agent in self.started:
            if agent.start == "ssh":
                pids.setdefault(agent.host, []).append(agent.ref)
        jobs = [a.ref for a in self.started if a.start == "slurm"]
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(pids) + 1))) as pool:
            futures = [pool.submit(ssh.stop_agents, self.cluster.hosts[h], ids, grace_s) for h, ids in pids.items()]
            if jobs:
                futures.append(pool.submit(slurm.cancel, jobs, grace_s))
            for future in futures:
                with contextlib.suppress(slurm.SlurmError):
                    future.result()
        self.started = [a for a in self.started if a.start not in ("ssh", "slurm")]
