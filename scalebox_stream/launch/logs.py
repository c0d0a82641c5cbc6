"""`scalebox logs`: the logs of an app's agents wherever they ran (local files, Slurm output files, SSH
hosts), read through `tail` here or over SSH; with --follow, all of them at once, each line labelled."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from scalebox_stream.launch import ssh
from scalebox_stream.launch.placement import StartedAgent, read_record
from scalebox_stream.spec.cluster import ClusterDef


def select(agents: Sequence[StartedAgent], module: str | None, host: str | None) -> list[StartedAgent]:
    """The agents of `module` on `host` (either may be None: any)."""
    return [a for a in agents if (module is None or a.module == module) and (host is None or a.host == host)]


def tail_command(cluster: ClusterDef | None, agent: StartedAgent, follow: bool) -> list[str]:
    """The command that prints an agent's log (following it with `follow`)."""
    if agent.start == "ssh" and cluster is not None and agent.host in cluster.hosts:
        return ssh.tail_argv(cluster.hosts[agent.host], agent.log, follow)
    return ["tail", "-n", "+1", *(["-F"] if follow else []), agent.log]


def show_logs(log_dir: Path, module: str | None, host: str | None, follow: bool, out: TextIO = sys.stdout) -> int:
    """Print the chosen agents' logs, each line prefixed `module@host | `; the number of agents shown."""
    cluster, agents = read_record(log_dir)
    chosen = select(agents, module, host)
    processes = [(f"{a.module}@{a.host}", subprocess.Popen(tail_command(cluster, a, follow), stdout=subprocess.PIPE,
                                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                           text=True, errors="replace"))
                 for a in chosen]
    lock = threading.Lock()

    def pump(label: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with lock:
                out.write(f"{label} | {line}")
                out.flush()
        process.wait()

    if follow:
        threads = [threading.Thread(target=pump, args=item, daemon=True) for item in processes]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            for _, process in processes:
                process.terminate()
    else:
        for item in processes:
            pump(*item)
    return len(chosen)
