"""Agents as Slurm jobs: one `sbatch` job per (module, host), released with `scancel` when the app finishes.

The jobs are submitted from this machine (a Slurm submit host); a host's `slurm_node` pins its jobs to
that node, and its `slurm_options` are passed to `sbatch` as they are."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence

from scalebox_stream.spec.cluster import HostDef


class SlurmError(RuntimeError):
    """sbatch refused a job, or Slurm's commands are not installed."""


def job_name(app: str, module: str, host: str) -> str:
    return f"sbx-{app}-{module}-{host}"


def sbatch_argv(host: HostDef, name: str, args: Sequence[str], env: dict[str, str], log: str) -> list[str]:
    """The `sbatch` command of one agent job: its output in `log`, its environment given in the job's
    command (a bootstrap list's commas would split `--export`)."""
    command = " ".join(["exec", "env", *(shlex.quote(f"{k}={v}") for k, v in env.items()),
                        host.scalebox_command, *(shlex.quote(a) for a in args)])
    node = ["--nodelist", host.slurm_node] if host.slurm_node else []
    return ["sbatch", "--parsable", "--job-name", name, "--output", log, "--ntasks", "1", *node,
            *host.slurm_options, "--wrap", command]


def submit(host: HostDef, name: str, args: Sequence[str], env: dict[str, str], log: str) -> str:
    """Submit one agent job; its job id."""
    result = _run(sbatch_argv(host, name, args, env, log))
    if result.returncode != 0:
        raise SlurmError(f"host {host.name}: sbatch failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().split(";")[0]


def queued(job_ids: Sequence[str]) -> set[str]:
    """The jobs among `job_ids` that Slurm still lists (pending, running or completing)."""
    if not job_ids:
        return set()
    result = _run(["squeue", "--noheader", "--format", "%i", "--jobs", ",".join(job_ids)])
    return {line.strip() for line in result.stdout.splitlines() if line.strip()} & set(job_ids)


def cancel(job_ids: Sequence[str], grace_s: float) -> None:
    """Release the jobs: SIGTERM the agents (their grace), then `scancel` what is left after `grace_s`;
    returns once Slurm lists none of them (or after another `grace_s`)."""
    if not job_ids:
        return
    _run(["scancel", "--signal", "TERM", "--full", *job_ids])
    deadline = time.monotonic() + grace_s
    while queued(job_ids) and time.monotonic() < deadline:
        time.sleep(0.3)
    if left := queued(job_ids):
        _run(["scancel", *left])
        deadline = time.monotonic() + grace_s
        while queued(list(left)) and time.monotonic() < deadline:
            time.sleep(0.3)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                              check=False)
    except FileNotFoundError:
        raise SlurmError(f"`{argv[0]}` is not installed here: agents started by Slurm need its client "
                         "commands on the submitting machine (Debian: slurm-client)") from None
