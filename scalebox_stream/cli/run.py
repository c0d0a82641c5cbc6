"""`scalebox run APP_YAML [BODY ...]`: deploy an app, run it to completion on local agents, summarize."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from confluent_kafka import Producer
from rich.console import Console

from scalebox_stream.cli.common import KafkaOption, PgOption, connections, fail
from scalebox_stream.cli.task import parse_headers
from scalebox_stream.events import Event, EventCodec
from scalebox_stream.kafka.config import producer_config
from scalebox_stream.kafka.task_publisher import flush_or_fail
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.launch.children import Children
from scalebox_stream.launch.deploy import deploy
from scalebox_stream.launch.feed import feed
from scalebox_stream.launch.progress import table, wait_for_run
from scalebox_stream.local.hanging import HangingReaper
from scalebox_stream.spec import SpecError, load_app
from scalebox_stream.spec.model import AppSpec


def local_reaper(bootstrap: str) -> HangingReaper | None:
    """On the local broker, clear hanging transactions while the run lasts (see `local.hanging`)."""
    from scalebox_stream.local import kafka as local_kafka

    info = local_kafka.running()
    return HangingReaper(bootstrap).start() if info is not None and info.bootstrap == bootstrap else None


def start_tasks(spec: AppSpec, bodies: list[str], module: str | None) -> list[tuple[str, str]]:
    """(module, body) pairs to send: the given bodies (`-` reads stdin lines), else every start_task."""
    if bodies:
        if bodies == ["-"]:
            bodies = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        target = module or spec.entry_module()
        return [(target, body) for body in bodies]
    return [(name, body) for name, m in spec.modules.items() for body in m.start_task
            if module is None or name == module]


def metrics_ports(base: int | None, modules: int) -> list[list[str]]:
    """The `--metrics-port` arguments of the projector, then of each module's agent (none without `base`)."""
    return [[] if base is None else ["--metrics-port", str(base + i)] for i in range(modules + 1)]


def run(
    app_file: Path = typer.Argument(..., help="The app.yaml to run."),
    bodies: list[str] = typer.Argument(None, help="Start task bodies ('-' reads lines from stdin)."),
    module: str | None = typer.Option(None, "--module", "-m", help="Module that receives the bodies."),
    env_file: list[Path] = typer.Option([], "--env-file", "-e", help="Extra env files for ${VAR} templating."),
    header: list[str] = typer.Option([], "--header", "-H", help="Header key=value for the start tasks."),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up after this many seconds."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics: the projector on this port, the agents of the home "
                                     "cluster's modules on the next ones, in the app file's order."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Run an app to completion: exit 0 only if every task succeeded."""
    console = Console(stderr=True)
    try:
        spec = load_app(app_file, tuple(env_file))
    except FileNotFoundError as exc:
        fail(f"{exc.filename}: no such file")
    except SpecError as exc:
        fail(str(exc))
    if module is not None and module not in spec.modules:
        fail(f"app {spec.name!r} has no module {module!r}")
    sends = start_tasks(spec, bodies or [], module)
    if not sends:
        fail("nothing to run: give task bodies or set start_task in the app file")
    conns = connections(kafka, pg)
    started = time.monotonic()
    deploy(spec, tuple(env_file), conns.kafka, conns.pg)
    from scalebox_stream.local.home import scalebox_home

    children = Children(scalebox_home() / "logs" / spec.name, {"SCALEBOX_KAFKA": conns.kafka,
                                                               "SCALEBOX_PG": conns.pg})
    try:
        here = [name for name in spec.modules if spec.cluster_of(name) == spec.cluster]
        ports = metrics_ports(metrics_port, len(here))
        children.start("projector", ["projector", *ports[0]])
        for name, port in zip(here, ports[1:], strict=True):
            children.start(f"agent-{name}", ["agent", "--app", spec.name, "--module", name,
                                             "--app-file", str(app_file), *sum((["-e", str(e)] for e in env_file), []),
                                             "--slots", str(spec.modules[name].slots), *port])
        if metrics_port is not None:
            console.print(f"metrics: projector on :{metrics_port}, agents of "
                          + ", ".join(f"{name} on :{metrics_port + 1 + i}" for i, name in enumerate(here)))
        if elsewhere := [f"{name} ({spec.cluster_of(name)})" for name in spec.modules if name not in here]:
            console.print(f"modules of other clusters: {', '.join(elsewhere)}; their agents and `scalebox mirror` "
                          "run there")
        producer, codec = Producer(producer_config(conns.kafka)), EventCodec()
        roots = feed(spec, sends, producer, conns.kafka, parse_headers(header))
        console.print(f"[bold]{spec.name}[/]: sent {len(roots)} task(s); agents and projector logs in "
                      f"{children.log_dir}")

        def check_children() -> None:
            dead = children.first_dead()
            if dead is not None:
                raise RuntimeError(f"{dead.name} exited with code {dead.exited()}:\n{dead.log_tail()}")

        reaper = local_reaper(conns.kafka)
        try:
            state = wait_for_run(conns.pg, roots, spec.name, check_children, timeout, console)
        finally:
            if reaper is not None:
                reaper.stop()
        producer.produce(EVENTS_TOPIC, key=spec.name, value=codec.encode(Event(
            "AppFinished", spec.name, {"succeeded": state.succeeded, "failed": state.failed}, producer="cli")))
        flush_or_fail(producer)
    except (RuntimeError, TimeoutError) as exc:
        fail(str(exc), code=1)
    except KeyboardInterrupt:
        console.print("interrupted; stopping agents")
        raise typer.Exit(130) from None
    finally:
        children.stop()
    console.print(table(state, f"{spec.name}: finished in {time.monotonic() - started:.1f}s"))
    if state.failed:
        console.print(f"[red]{state.failed} task(s) failed[/]")
        raise typer.Exit(1)
