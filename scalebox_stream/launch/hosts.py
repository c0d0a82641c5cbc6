"""What `scalebox host list|check-status` and `scalebox cluster check-status` show: each host of a cluster
with its agents and last heartbeat (from the presence topic), and on request whether it answers."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from scalebox_stream import __version__
from scalebox_stream.kafka.presence import PRESENCE_TTL_S, Presence, is_live
from scalebox_stream.launch import ssh
from scalebox_stream.spec.cluster import ClusterDef, HostDef


@dataclass(frozen=True)
class HostRow:
    """One host as seen from the presence records: up (a live agent), down (an agent that stopped renewing
    its record without saying it stopped), idle (every agent said it stopped) or unknown (never seen)."""

    cluster: str
    host: str
    address: str
    start: str
    status: str
    agents: tuple[str, ...]
    """`app/module` of each live agent."""
    heartbeat_age_s: float | None
    reachable: str = ""
    version: str = ""


def presence_names(host: HostDef, head: str) -> set[str]:
    """The host names the agents of `host` write in their records: its own, and on the head this machine's."""
    return {host.name, socket.gethostname()} if host.name == head else {host.name}


def host_rows(cluster: ClusterDef, board: Iterable[Presence], now_s: float, ttl_s: float = PRESENCE_TTL_S
              ) -> list[HostRow]:
    """A row per host of `cluster`, from the agents' latest presence records."""
    records = list(board)
    rows = []
    for host in cluster.hosts.values():
        names = presence_names(host, cluster.head)
        mine = [p for p in records if p.host in names]
        live = sorted({f"{p.app}/{p.module}" for p in mine if is_live(p, now_s, ttl_s)})
        latest = max(mine, key=lambda p: p.at_s, default=None)
        if live:
            status = "up"
        elif latest is None:
            status = "unknown"
        else:  # the last word decides: an agent that went quiet without saying it stopped means a dead host
            status = "idle" if latest.state == "stopped" else "down"
        rows.append(HostRow(cluster.name, host.name, host.address or host.name, host.start, status, tuple(live),
                            None if latest is None else max(0.0, now_s - latest.at_s)))
    return rows


def probe_host(host: HostDef, head: str) -> tuple[str, str]:
    """(reachability, version) of a host: the head and `local` hosts are this machine; `ssh` hosts answer
    `scalebox version` over SSH; `slurm` hosts are reachable if Slurm lists their node."""
    if host.name == head or host.start == "local":
        return "yes (this machine)", f"scalebox-stream {__version__}"
    if host.start == "slurm":
        argv = ["sinfo", "--noheader", "--format", "%n %T", *(["--nodes", host.slurm_node] if host.slurm_node else [])]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            return f"no ({type(exc).__name__})", ""
        states = " ".join(out.stdout.split()) or out.stderr.strip()
        return ("yes" if out.returncode == 0 and out.stdout.strip() else "no") + f" (slurm: {states})", \
            f"scalebox-stream {__version__} (submitted from here)"
    reachable, said = ssh.probe(host)
    return ("yes" if reachable else f"no: {said}"), (said if reachable else "")


def probe_rows(cluster: ClusterDef, rows: list[HostRow]) -> list[HostRow]:
    """`rows` with each host's reachability and version filled in (hosts probed in parallel)."""
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(rows)))) as pool:
        answers = list(pool.map(lambda row: probe_host(cluster.hosts[row.host], cluster.head), rows))
    return [HostRow(**{**row.__dict__, "reachable": r, "version": v})
            for row, (r, v) in zip(rows, answers, strict=True)]


def read_presence(bootstrap: str) -> list[Presence]:
    """Every agent's latest presence record."""
    from scalebox_stream.kafka.presence import HostDirectory

    directory = HostDirectory(bootstrap)
    try:
        return list(directory.board().values())
    finally:
        directory.close()
