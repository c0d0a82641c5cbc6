"""Serving a deployed app until it is finished (`scalebox app create`): a detached server process starts a
projector and the agents of the home cluster's modules where their `slots:` place them (children here, over
SSH, as Slurm jobs: see `launch.placement`; the machine's state owner runs apart, see `launch.state_service`).
The agents stop by themselves once the app is finished (`scalebox app set-finished TEXT`, from a task or the
command line: see `agent.lifespan`); the server stops what is left then, or when told to stop (`app
stop`/`delete`, SIGTERM). Tasks are added meanwhile with `scalebox task add`. Agents started over SSH or by Slurm
do not depend on the server: they stop with their app even if it is gone.

The server's process id is kept in `$SCALEBOX_HOME/apps/<app>/serve.pid`, its log next to the agents' in
`$SCALEBOX_HOME/logs/<app>/serve.log`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalebox_stream.config import CliSettings, Connections, child_environment
from scalebox_stream.launch.children import Child, Children, restart_policy
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.placement import (
    AgentPlan,
    AgentRecord,
    PlacementError,
    StartedAgent,
    agent_argv,
    agent_log_name,
    plan_agents,
    record_path,
)
from scalebox_stream.launch.remote import RemoteAgents
from scalebox_stream.launch.results import result_since
from scalebox_stream.spec.cluster import ClusterDef, resolve_cluster
from scalebox_stream.spec.model import AppSpec

log = logging.getLogger(__name__)

PID_FILE = "serve.pid"
LOG_FILE = "serve.log"


def app_dir(home: Path, app: str) -> Path:
    """`$SCALEBOX_HOME/apps/<app>`: the served app's pid file (and a made-up app's file)."""
    return home / "apps" / app


def server_pid(home: Path, app: str) -> int | None:
    """The pid of the live server of `app`, or None (a stale pid file is removed)."""
    path = app_dir(home, app) / PID_FILE
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return pid


def start_server(settings: CliSettings, conns: Connections, app: str, app_file: Path,
                 env_files: tuple[Path, ...]) -> int:
    """Start `scalebox app serve` detached (its own session, outliving this command); its pid."""
    log_dir = settings.home / "logs" / app
    log_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "scalebox_stream.cli.main", "app", "serve", app, "--app-file", str(app_file),
            *(arg for env in env_files for arg in ("-e", str(env)))]
    env = child_environment({"SCALEBOX_KAFKA": conns.kafka, "SCALEBOX_PG": conns.pg,
                             "SCALEBOX_HOME": str(settings.home)})
    with open(log_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return process.pid


def stop_server(home: Path, app: str, wait_s: float = 30.0) -> bool:
    """SIGTERM the app's server and wait until it has stopped its children and exited; False if none ran."""
    pid = server_pid(home, app)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


@dataclass(frozen=True)
class ServeEnd:
    """Why serving ended: the app's result text, or None when it was told to stop."""

    result: str | None


def serve_app(spec: AppSpec, app_file: Path, env_files: tuple[Path, ...], settings: CliSettings,
              conns: Connections, poll_s: float = 0.5,
              finished: Callable[[str, str, float], str | None] = result_since,
              remote: Callable[[ClusterDef, str, Path, str], RemoteAgents] = RemoteAgents) -> ServeEnd:
    """Run the app's projector and its agents where each module's `slots:` places them (children here, over
    SSH, Slurm jobs) until it is finished or SIGTERM/SIGINT arrives. The projector or an agent here that ends
    unexpectedly is restarted as `settings.child_restarts` allows (an agent that stopped by itself, code 0, has
    ended for good); raise RuntimeError when the policy gives up on one, or if a host's agents cannot start."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    directory = app_dir(settings.home, spec.name)
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = directory / PID_FILE
    pid_file.write_text(str(os.getpid()))
    started = time.time()
    children = Children(settings.home / "logs" / spec.name, {"SCALEBOX_KAFKA": conns.kafka, "SCALEBOX_PG": conns.pg},
                        restart_policy(settings))
    away: RemoteAgents | None = None
    try:
        children.start("projector", ["projector"])
        cluster = resolve_cluster(spec.cluster, settings.home, spec.clusters)
        plans = plan_agents(spec, cluster, [name for name in spec.modules if spec.cluster_of(name) == spec.cluster])
        here: list[tuple[AgentPlan, Child]] = []
        for plan in plans:
            if plan.start == "local":
                here.append((plan, children.start(agent_log_name(plan), agent_argv(spec, app_file, env_files, plan))))
        elsewhere: list[StartedAgent] = []
        if others := [plan for plan in plans if plan.start != "local"]:
            away = remote(cluster, spec.name, children.log_dir, conns.kafka)
            elsewhere = away.start(others, lambda plan: agent_argv(spec, app_file, env_files, plan))

        record = AgentRecord(children.log_dir, cluster, here, elsewhere)
        agents = record.write()
        if away is not None:
            log.info("agents on %s", ", ".join(sorted({f"{a.host} ({a.start})" for a in agents})))
        while not stop.wait(poll_s):
            # (restarts happen here, on the main thread, which started the children: PR_SET_PDEATHSIG follows it)
            record.after_restarts(children.supervise(log.warning))
            if (text := finished(conns.pg, spec.name, started)) is not None:
                if not children.wait_agents_gone(settings.children_grace_s):
                    log.warning("local agents still running %.0fs after the app finished: stopping them",
                                settings.children_grace_s)
                if away is not None and not away.wait_gone(settings.children_grace_s):
                    log.warning("agents still running %.0fs after the app finished: stopping them",
                                settings.children_grace_s)
                return ServeEnd(text)
        return ServeEnd(None)
    finally:
        if away is not None:  # (when the app finished, only those that did not stop by themselves)
            away.stop(settings.children_grace_s)
        children.stop(settings.children_grace_s)
        pid_file.unlink(missing_ok=True)


def wait_placed(home: Path, app: str, pid: int, since_s: float, timeout_s: float = 120.0,
                poll_s: float = 0.2) -> None:
    """Until the server of `app` (process `pid`) has started its agents (it writes their record after
    `since_s`); RuntimeError with its log's tail if it ended first, TimeoutError after `timeout_s`."""
    log_dir = home / "logs" / app
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if record_path(log_dir).stat().st_mtime >= since_s:
                return
        except OSError:
            pass
        try:
            os.kill(pid, 0)
            ended = os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            ended = False
        except OSError:
            ended = True
        if ended:
            tail = (log_dir / LOG_FILE).read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"the server of app {app!r} ended before its agents started:\n" + "\n".join(tail))
        time.sleep(poll_s)
    raise TimeoutError(f"the agents of app {app!r} were not started within {timeout_s:.0f}s (see {log_dir / LOG_FILE})")


def create_app(spec: AppSpec, app_file: Path, env_files: tuple[Path, ...], settings: CliSettings,
               conns: Connections, deploy_app: Callable[[AppSpec, tuple[Path, ...], str, str], None] | None = None,
               placed: Callable[[Path, str, int, float], None] | None = wait_placed) -> tuple[int, bool]:
    """Deploy the app and serve it detached (`scalebox app create`): (server pid, whether it was already
    served, in which case nothing was started). The machine's state owner is started too if none runs. A host
    list naming no host of the cluster is refused (OperationError, code 2) before anything is deployed; the
    command returns once the server has started the agents (`placed`), or says why it could not."""
    from scalebox_stream.launch.deploy import deploy
    from scalebox_stream.launch.state_service import ensure_state_service

    if (pid := server_pid(settings.home, spec.name)) is not None:
        return pid, True
    try:
        plan_agents(spec, resolve_cluster(spec.cluster, settings.home, spec.clusters),
                    [name for name in spec.modules if spec.cluster_of(name) == spec.cluster])
    except PlacementError as exc:
        raise OperationError(str(exc), code=2) from None
    (deploy_app or deploy)(spec, env_files, conns.kafka, conns.pg)
    ensure_state_service(settings.home, conns.kafka, spec.name)
    since = time.time() - 1.0  # (file times may be coarser than the clock)
    pid = start_server(settings, conns, spec.name, app_file, env_files)
    if placed is not None:
        placed(settings.home, spec.name, pid, since)
    return pid, False
