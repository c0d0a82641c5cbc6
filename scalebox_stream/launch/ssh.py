"""Agents on other hosts over SSH: the OpenSSH client (`ssh`, key-based, BatchMode) runs a short POSIX sh
script there that checks the host's scalebox-stream version and starts the agents detached (`setsid
nohup`), so that they outlive the connection; they are stopped by process id the same way."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from scalebox_stream import __version__
from scalebox_stream.spec.cluster import HostDef

CONNECT_TIMEOUT_S = 10
VERSION_MISMATCH = 3
"""Exit code of the start script when the host's scalebox-stream is not compatible."""
NOT_INSTALLED = 127


def compatible_prefix(version: str = __version__) -> str:
    """Versions sharing major.minor talk the same events and topics: `0.1.` for 0.1.0."""
    parts = version.split(".") + ["0"]
    return f"{parts[0]}.{parts[1]}."


def ssh_argv(host: HostDef, script: str) -> list[str]:
    """The `ssh` command that runs `script` (POSIX sh) on `host`: no password prompt, no terminal."""
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "LogLevel=ERROR"]
    for option in host.ssh_options:
        options += ["-o", option]
    return ["ssh", *options, "-p", str(host.port), host.target, script]


@dataclass(frozen=True)
class RemoteAgent:
    """An agent to start on a host: its name (for the log file), argv after `scalebox`, and environment."""

    name: str
    args: Sequence[str]
    env: dict[str, str]


def start_script(host: HostDef, log_dir: str, agents: Sequence[RemoteAgent]) -> str:
    """A POSIX sh script: check `scalebox version` is compatible, then start each agent detached with its
    output in `<log_dir>/<name>.log`, printing `<pid> <log path>` per agent. `log_dir` may use `$HOME`."""
    command = host.scalebox_command
    prefix = compatible_prefix()
    lines = [
        "set -e",
        f"v=$({command} version 2>/dev/null) || {{ echo 'scalebox not found'; exit {NOT_INSTALLED}; }}",
        f'case "$v" in "scalebox-stream {prefix}"*) ;; *) echo "$v"; exit {VERSION_MISMATCH};; esac',
        f'd="{log_dir}"', 'mkdir -p "$d"', "cd /",
    ]
    for agent in agents:
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in agent.env.items())
        args = " ".join(shlex.quote(a) for a in agent.args)
        log = f'"$d"/{shlex.quote(agent.name + ".log")}'
        lines.append(f"env {env} setsid nohup {command} {args} >{log} 2>&1 </dev/null &")
        lines.append(f'echo "$! $d/{agent.name}.log"')
    return "\n".join(lines)


def stop_script(pids: Sequence[str], grace_s: float) -> str:
    """A POSIX sh script: SIGTERM the pids, wait up to `grace_s` for them to end, then SIGKILL the rest."""
    ids = " ".join(str(int(p)) for p in pids)
    rounds = max(1, int(grace_s * 5))
    return (f"kill -TERM {ids} 2>/dev/null; i=0; while [ $i -lt {rounds} ]; do alive=0; for p in {ids}; do "
            f"kill -0 $p 2>/dev/null && alive=1; done; [ $alive = 0 ] && exit 0; sleep 0.2; i=$((i+1)); done; "
            f"kill -KILL {ids} 2>/dev/null; exit 0")


class SshError(RuntimeError):
    """A host that could not be reached, or runs no compatible scalebox-stream."""


def install_hint(host: HostDef, found: str) -> str:
    """What to do about a host whose scalebox-stream is missing or incompatible."""
    return (f"host {host.name} ({host.target}): {found}; install scalebox-stream {__version__} there "
            f"(`pip install scalebox-stream=={__version__}` in a Python 3.11 environment) or point the host's "
            f"`scalebox_command` parameter at it")


def start_agents(host: HostDef, log_dir: str, agents: Sequence[RemoteAgent], timeout_s: float = 60.0
                 ) -> list[tuple[str, str]]:
    """Start `agents` on `host` in one SSH session; (pid, log path) of each, in order. SshError if the host
    is out of reach or its scalebox-stream is missing or incompatible."""
    result = _run(host, start_script(host, log_dir, agents), timeout_s)
    out = result.stdout.strip()
    if result.returncode == NOT_INSTALLED and out.startswith("scalebox not found"):
        raise SshError(install_hint(host, f"`{host.scalebox_command} version` failed"))
    if result.returncode == VERSION_MISMATCH:
        raise SshError(install_hint(host, f"it runs {out or 'an unknown version'}, not {compatible_prefix()}x"))
    if result.returncode != 0:
        raise SshError(f"host {host.name} ({host.target}): ssh failed with code {result.returncode}: "
                       f"{(result.stderr or out).strip()[-500:]}")
    started = [tuple(line.split(" ", 1)) for line in out.splitlines() if line.strip()]
    if len(started) != len(agents):
        raise SshError(f"host {host.name}: expected {len(agents)} agents started, the host said {out!r}")
    return [(pid, log) for pid, log in started]


def stop_agents(host: HostDef, pids: Sequence[str], grace_s: float) -> None:
    """Stop the agents `pids` on `host` (SIGTERM, then SIGKILL after `grace_s`); a host out of reach is left
    as it is (a dead host has no agents left to stop)."""
    if pids:
        with contextlib.suppress(SshError):
            _run(host, stop_script(pids, grace_s), grace_s + CONNECT_TIMEOUT_S + 5)


def running(host: HostDef, pids: Sequence[str]) -> set[str]:
    """The agents among `pids` still running on `host`; none if the host does not answer (as for
    `stop_agents`: a dead host has no agents left)."""
    if not pids:
        return set()
    script = " ".join(f"kill -0 {int(p)} 2>/dev/null && echo {int(p)};" for p in pids) + " exit 0"
    try:
        result = _run(host, script, CONNECT_TIMEOUT_S + 5)
    except SshError:
        return set()
    return set(result.stdout.split()) & set(pids) if result.returncode == 0 else set()


def probe(host: HostDef, timeout_s: float = 15.0) -> tuple[bool, str]:
    """(reachable, what `scalebox version` says there or why not)."""
    try:
        result = _run(host, f"{host.scalebox_command} version", timeout_s)
    except SshError as exc:
        return False, str(exc)
    if result.returncode == 255:
        return False, (result.stderr.strip().splitlines() or ["ssh failed"])[-1]
    if result.returncode != 0:
        return True, f"no scalebox-stream ({host.scalebox_command} version: exit {result.returncode})"
    return True, result.stdout.strip()


def tail_argv(host: HostDef, path: str, follow: bool) -> list[str]:
    """The `ssh` command printing a remote log (following it with -f)."""
    return ssh_argv(host, f"tail -n +1 {'-F ' if follow else ''}{shlex.quote(path)}")


def _run(host: HostDef, script: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(ssh_argv(host, script), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise SshError("the OpenSSH client `ssh` is not installed here (Debian: apt-get install "
                       "openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SshError(f"host {host.name} ({host.target}): no answer over SSH within {timeout_s:.0f}s") from None
