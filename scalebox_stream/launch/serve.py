"""Serving a deployed app until it is finished (`scalebox app create`): a detached server process starts a
projector and one agent per module of the home cluster (the machine's state owner runs apart, see
`launch.state_service`), and stops them once the app is finished
(`scalebox app set-finished TEXT`, from a task or the command line) or when told to stop (`app stop`/`delete`,
SIGTERM). Tasks are added meanwhile with `scalebox task add`.

The server's process id is kept in `$SCALEBOX_HOME/apps/<app>/serve.pid`, its log next to the agents' in
`$SCALEBOX_HOME/logs/<app>/serve.log`."""

from __future__ import annotations

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
from scalebox_stream.launch.children import Children
from scalebox_stream.launch.results import result_since
from scalebox_stream.spec.model import AppSpec

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
              finished: Callable[[str, str, float], str | None] = result_since) -> ServeEnd:
    """Run the app's projector and agents until it is finished or SIGTERM/SIGINT arrives; raise
    RuntimeError if one of them dies."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    directory = app_dir(settings.home, spec.name)
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = directory / PID_FILE
    pid_file.write_text(str(os.getpid()))
    started = time.time()
    children = Children(settings.home / "logs" / spec.name, {"SCALEBOX_KAFKA": conns.kafka, "SCALEBOX_PG": conns.pg})
    try:
        children.start("projector", ["projector"])
        env_args = [arg for env in env_files for arg in ("-e", str(env))]
        for name in spec.modules:
            if spec.cluster_of(name) == spec.cluster:
                children.start(f"agent-{name}", ["agent", "--app", spec.name, "--module", name, "--app-file",
                                                 str(app_file), *env_args, "--slots", str(spec.modules[name].slots)])
        while not stop.wait(poll_s):
            if (dead := children.first_dead()) is not None:
                raise RuntimeError(f"{dead.name} exited with code {dead.exited()}:\n{dead.log_tail()}")
            if (text := finished(conns.pg, spec.name, started)) is not None:
                return ServeEnd(text)
        return ServeEnd(None)
    finally:
        children.stop(settings.children_grace_s)
        pid_file.unlink(missing_ok=True)


def create_app(spec: AppSpec, app_file: Path, env_files: tuple[Path, ...], settings: CliSettings,
               conns: Connections, deploy_app: Callable[[AppSpec, tuple[Path, ...], str, str], None] | None = None
               ) -> tuple[int, bool]:
    """Deploy the app and serve it detached (`scalebox app create`): (server pid, whether it was already
    served, in which case nothing was started). The machine's state owner is started too if none runs."""
    from scalebox_stream.launch.deploy import deploy
    from scalebox_stream.launch.state_service import ensure_state_service

    if (pid := server_pid(settings.home, spec.name)) is not None:
        return pid, True
    (deploy_app or deploy)(spec, env_files, conns.kafka, conns.pg)
    ensure_state_service(settings.home, conns.kafka, spec.name)
    return start_server(settings, conns, spec.name, app_file, env_files), False
