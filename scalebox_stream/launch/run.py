"""Running an app to completion on this machine (`scalebox run`): deploy, start agents and projector, send the
start tasks, wait until every task has ended, announce AppFinished, stop the children."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rich.console import Console

from scalebox_stream.config import CliSettings, Connections
from scalebox_stream.events import AppFinished, Event, EventStamp
from scalebox_stream.launch.children import Children
from scalebox_stream.launch.dead_letters import DeadLetterWatch
from scalebox_stream.launch.deploy import deploy
from scalebox_stream.launch.feed import Backlog, feed
from scalebox_stream.launch.progress import RunState, wait_for_run
from scalebox_stream.launch.state_owner import ResultWatch, start_state_owner
from scalebox_stream.spec.model import AppSpec


@dataclass(frozen=True)
class RunRequest:
    """What to run: the app file and its env files, the (module, body) start tasks and their headers."""

    app_file: Path
    sends: tuple[tuple[str, str], ...]
    env_files: tuple[Path, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    metrics_port: int | None = None


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its final per-module counts, how long it took, where the children logged."""

    state: RunState
    elapsed_s: float
    log_dir: Path
    result: str | None = None
    """The text the app was finished with (`scalebox app set-finished`), if any."""


class RunSender(Protocol):
    """The Kafka edge of a run: tasks in transactions, and the AppFinished event."""

    def send(self, app: str, tasks: Sequence[tuple[str, str]],
             headers: dict[str, str] | None = None) -> list[str]: ...

    def send_event(self, event: Event) -> None: ...


class Stoppable(Protocol):
    def stop(self) -> None: ...


def _sender(bootstrap: str, settings: CliSettings) -> RunSender:
    from scalebox_stream.kafka.task_publisher import TaskSender

    return TaskSender(bootstrap, timeout_s=settings.flush_timeout_s)


def _backlog(bootstrap: str) -> Backlog:
    from scalebox_stream.kafka.backlog import BacklogMonitor

    return BacklogMonitor(bootstrap)


def local_reaper(bootstrap: str) -> Stoppable | None:
    """On the local broker, clear hanging transactions while the run lasts (see `local.hanging`)."""
    from scalebox_stream.local import kafka as local_kafka
    from scalebox_stream.local.hanging import HangingReaper

    info = local_kafka.running()
    return HangingReaper(bootstrap).start() if info is not None and info.bootstrap == bootstrap else None


@dataclass(frozen=True)
class RunKit:
    """The parts of a run that touch the world, each replaceable (unit tests hand in fakes)."""

    deploy: Callable[[AppSpec, tuple[Path, ...], str, str], None] = deploy
    children: Callable[[Path, dict[str, str]], Children] = Children
    sender: Callable[[str, CliSettings], RunSender] = _sender
    backlog: Callable[[str], Backlog] = _backlog
    reaper: Callable[[str], Stoppable | None] = local_reaper
    wait: Callable[..., RunState] = wait_for_run
    watch: Callable[..., DeadLetterWatch] | None = DeadLetterWatch
    state_owner: Callable[[Children], object] | None = start_state_owner
    """Starts the run's state owner among the children (semaphores, variables, the app's result)."""
    result: Callable[[str, str], ResultWatch] | None = ResultWatch
    """Watches the app's result text (bootstrap, app): `text()` when every task has ended is the result set
    during the run, if any."""


def start_tasks(spec: AppSpec, bodies: Sequence[str], module: str | None) -> list[tuple[str, str]]:
    """(module, body) pairs to send: the given bodies (to `module`, else the entry module), else every
    module's `start_task` (only `module`'s if given)."""
    if bodies:
        target = module or spec.entry_module()
        return [(target, body) for body in bodies]
    return [(name, body) for name, m in spec.modules.items() for body in m.start_task
            if module is None or name == module]


def metrics_ports(base: int | None, modules: int) -> list[list[str]]:
    """The `--metrics-port` arguments of the projector, then of each module's agent (none without `base`)."""
    return [[] if base is None else ["--metrics-port", str(base + i)] for i in range(modules + 1)]


def run_app(spec: AppSpec, request: RunRequest, settings: CliSettings, conns: Connections, console: Console,
            kit: RunKit | None = None) -> RunResult:
    """Run `spec` to completion: deploy it, start a projector and one agent per module of the home cluster,
    send the start tasks, wait (showing progress on `console`) until every task has ended, publish
    AppFinished, and stop the children whatever happens. Raises RuntimeError if a child dies or Kafka fails,
    OperationError if the app's topics collide with another app's or the projector dead-lettered events the
    run waits for, TimeoutError after `request.timeout_s`."""
    kit = kit or RunKit()
    started = time.monotonic()
    kit.deploy(spec, request.env_files, conns.kafka, conns.pg)
    children = kit.children(settings.home / "logs" / spec.name, {"SCALEBOX_KAFKA": conns.kafka,
                                                                 "SCALEBOX_PG": conns.pg})
    watch: DeadLetterWatch | None = None
    try:
        here = [name for name in spec.modules if spec.cluster_of(name) == spec.cluster]
        ports = metrics_ports(request.metrics_port, len(here))
        env_args = [arg for env in request.env_files for arg in ("-e", str(env))]
        children.start("projector", ["projector", *ports[0]])
        if kit.state_owner is not None:
            kit.state_owner(children)
        results = None if kit.result is None else kit.result(conns.kafka, spec.name)
        for name, port in zip(here, ports[1:], strict=True):
            children.start(f"agent-{name}", ["agent", "--app", spec.name, "--module", name,
                                             "--app-file", str(request.app_file), *env_args,
                                             "--slots", str(spec.modules[name].slots), *port])
        if request.metrics_port is not None:
            console.print(f"metrics: projector on :{request.metrics_port}, agents of "
                          + ", ".join(f"{name} on :{request.metrics_port + 1 + i}" for i, name in enumerate(here)))
        if elsewhere := [f"{name} ({spec.cluster_of(name)})" for name in spec.modules if name not in here]:
            console.print(f"modules of other clusters: {', '.join(elsewhere)}; their agents and `scalebox mirror` "
                          "run there")
        sender = kit.sender(conns.kafka, settings)
        watch = None if kit.watch is None else kit.watch(conns.kafka, spec.name, settings.dead_letter_grace_s)
        roots = feed(spec, request.sends, sender, lambda: kit.backlog(conns.kafka), request.headers,
                     poll_s=settings.backlog_poll_s)
        console.print(f"[bold]{spec.name}[/]: sent {len(roots)} task(s); agents and projector logs in "
                      f"{children.log_dir}")

        def check_children() -> None:
            dead = children.first_dead()
            if dead is not None:
                raise RuntimeError(f"{dead.name} exited with code {dead.exited()}:\n{dead.log_tail()}")

        reaper = kit.reaper(conns.kafka)
        if watch is not None:
            watch.expect(roots)
        try:
            state = kit.wait(conns.pg, roots, spec.name, check_children, request.timeout_s, console,
                             settings.progress_poll_s, **({} if watch is None else {"watch": watch.check}))
        finally:
            if reaper is not None:
                reaper.stop()
        sender.send_event(EventStamp(spec.name, producer="cli").event(
            AppFinished(succeeded=state.succeeded, failed=state.failed)))
        result = None if results is None else results.text()
    except KeyboardInterrupt:
        console.print("interrupted; stopping agents")
        raise
    finally:
        if watch is not None:
            watch.close()
        children.stop(settings.children_grace_s)
    return RunResult(state, time.monotonic() - started, children.log_dir, result)
