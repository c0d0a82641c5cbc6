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
from scalebox_stream.launch.children import Child, Children, restart_policy
from scalebox_stream.launch.cli_tasks import ensure_host_topic, placed_groups
from scalebox_stream.launch.dead_letters import DeadLetterWatch
from scalebox_stream.launch.deploy import deploy
from scalebox_stream.launch.feed import Backlog, feed
from scalebox_stream.launch.placement import (
    AgentPlan,
    AgentRecord,
    StartedAgent,
    agent_argv,
    agent_log_name,
    plan_agents,
)
from scalebox_stream.launch.progress import RunState, wait_for_run
from scalebox_stream.launch.remote import RemoteAgents
from scalebox_stream.launch.state_owner import ResultWatch, start_state_owner
from scalebox_stream.policy.restarts import RestartPolicy
from scalebox_stream.spec.cluster import ClusterDef, resolve_cluster
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
    task_headers: tuple[dict[str, str], ...] = ()
    """Per start task (in the order of `sends`), headers on top of `headers` (a line's `body,{headers}`)."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its final per-module counts, how long it took, where the children logged."""

    state: RunState
    elapsed_s: float
    log_dir: Path
    result: str | None = None
    """The app's result text, if a task (or anyone) ran `scalebox app set-finished TEXT` during the run."""


class RunSender(Protocol):
    """The Kafka edge of a run: tasks in transactions, and the AppFinished event."""

    def send(self, app: str, tasks: Sequence[tuple[str, str]],
             headers: dict[str, str] | None = None, host: str | None = None) -> list[str]: ...

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
    children: Callable[[Path, dict[str, str], RestartPolicy], Children] = Children
    """Starts, restarts (by the policy) and stops the run's children."""
    sender: Callable[[str, CliSettings], RunSender] = _sender
    backlog: Callable[[str], Backlog] = _backlog
    reaper: Callable[[str], Stoppable | None] = local_reaper
    wait: Callable[..., RunState] = wait_for_run
    watch: Callable[..., DeadLetterWatch] | None = DeadLetterWatch
    cluster: Callable[[AppSpec, Path], ClusterDef] = lambda spec, home: resolve_cluster(spec.cluster, home,
                                                                                         spec.clusters)
    remote: Callable[[ClusterDef, str, Path, str], RemoteAgents] = RemoteAgents
    state_owner: Callable[[Children], object] | None = start_state_owner
    """Starts the run's state owner among the children (semaphores, variables, the app's result)."""
    host_topic: Callable[[str, str, str, str], None] = ensure_host_topic
    """Makes a module's task topic on a host (bootstrap, app, module, host) before HOST-BOUND start tasks go there."""
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


def agent_args(spec: AppSpec, request: RunRequest, plan: AgentPlan) -> list[str]:
    """The `scalebox` arguments of one agent of the run (the host named unless it is the head)."""
    return agent_argv(spec, request.app_file, request.env_files, plan)


def run_app(spec: AppSpec, request: RunRequest, settings: CliSettings, conns: Connections, console: Console,
            kit: RunKit | None = None) -> RunResult:
    """Run `spec` to completion: deploy it, start a projector and one agent per module of the home cluster,
    send the start tasks, wait (showing progress on `console`) until every task has ended, publish
    AppFinished, and stop the children whatever happens. A child that ends unexpectedly is restarted as
    `settings.child_restarts` allows (see `policy.restarts`). Raises RuntimeError if a child dies for good or
    Kafka fails, OperationError if the app's topics collide with another app's or the projector dead-lettered
    events the run waits for, TimeoutError after `request.timeout_s`."""
    kit = kit or RunKit()
    started = time.monotonic()
    kit.deploy(spec, request.env_files, conns.kafka, conns.pg)
    children = kit.children(settings.home / "logs" / spec.name, {"SCALEBOX_KAFKA": conns.kafka,
                                                                 "SCALEBOX_PG": conns.pg}, restart_policy(settings))
    watch: DeadLetterWatch | None = None
    remote: RemoteAgents | None = None
    try:
        here = [name for name in spec.modules if spec.cluster_of(name) == spec.cluster]
        cluster = kit.cluster(spec, settings.home)
        plans = plan_agents(spec, cluster, here)
        local = [plan for plan in plans if plan.start == "local"]
        ports = metrics_ports(request.metrics_port, len(local))
        children.start("projector", ["projector", *ports[0]])
        if kit.state_owner is not None:
            kit.state_owner(children)
        results = None if kit.result is None else kit.result(conns.kafka, spec.name)
        here_agents: list[tuple[AgentPlan, Child]] = []
        for plan, port in zip(local, ports[1:], strict=True):
            child = children.start(agent_log_name(plan), agent_args(spec, request, plan) + port)
            if child is not None:
                here_agents.append((plan, child))
        away: list[StartedAgent] = []
        if len(local) < len(plans):
            remote = kit.remote(cluster, spec.name, children.log_dir, conns.kafka)
            away = remote.start([plan for plan in plans if plan.start != "local"],
                                lambda plan: agent_args(spec, request, plan))

        record = AgentRecord(children.log_dir, cluster, here_agents, away)
        agents = record.write()
        if remote is not None:
            console.print("agents on " + ", ".join(sorted({f"{a.host} ({a.start})" for a in agents})))
        if request.metrics_port is not None:
            console.print(f"metrics: projector on :{request.metrics_port}, agents of "
                          + ", ".join(f"{agent_log_name(p)[6:]} on :{request.metrics_port + 1 + i}"
                                      for i, p in enumerate(local)))
        if elsewhere := [f"{name} ({spec.cluster_of(name)})" for name in spec.modules if name not in here]:
            console.print(f"modules of other clusters: {', '.join(elsewhere)}; their agents and `scalebox mirror` "
                          "run there")
        sender = kit.sender(conns.kafka, settings)
        watch = None if kit.watch is None else kit.watch(conns.kafka, spec.name, settings.dead_letter_grace_s)
        roots: list[str] = []
        for sends, headers, host in placed_groups(spec, header_groups(request)):
            for module in sorted({module for module, _ in sends} if host is not None else ()):
                kit.host_topic(conns.kafka, spec.name, module, host)
            roots += feed(spec, sends, sender, lambda: kit.backlog(conns.kafka), headers,
                          poll_s=settings.backlog_poll_s, host=host)
        console.print(f"[bold]{spec.name}[/]: sent {len(roots)} task(s); agents and projector logs in "
                      f"{children.log_dir}")

        def check_children() -> None:
            """Restart children as the policy says (on this, the main thread, which started them); raise when it
            gives up on one. A restarted agent's new pid goes into the record."""
            record.after_restarts(children.supervise(lambda line: console.print(line, markup=False, highlight=False,
                                                                                soft_wrap=True)))

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
        if remote is not None:
            remote.stop(settings.children_grace_s)
        children.stop(settings.children_grace_s)
    return RunResult(state, time.monotonic() - started, children.log_dir, result)


def header_groups(request: RunRequest) -> list[tuple[list[tuple[str, str]], dict[str, str]]]:
    """The start tasks cut where their headers change: (sends, headers) runs, each fed on its own."""
    groups: list[tuple[list[tuple[str, str]], dict[str, str]]] = []
    for index, send in enumerate(request.sends):
        extra = request.task_headers[index] if index < len(request.task_headers) else {}
        headers = {**request.headers, **extra}
        if groups and groups[-1][1] == headers:
            groups[-1][0].append(send)
        else:
            groups.append(([send], headers))
    return groups
