"""`scalebox agent`, `scalebox projector` and `scalebox replay`: the long-running processes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from scalebox_stream.cli.common import (
    KafkaOption,
    PgOption,
    connect,
    connections,
    explain,
    fail,
    settings,
    setup_logging,
)
from scalebox_stream.spec import SpecError, load_app


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex ('' if it cannot be read)."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def agent(
    app_name: str = typer.Option(..., "--app", help="App name (looked up in the sbx.apps topic)."),
    module: str = typer.Option(..., "--module", help="The module this agent serves."),
    app_file: Path | None = typer.Option(None, "--app-file", help="Load the app from this file instead."),
    app_sha256: str | None = typer.Option(None, "--app-sha256", help="Run the app only if its file has this "
                                          "SHA-256 (pins the definition an sbx.apps record points to)."),
    env_file: list[Path] = typer.Option([], "--env-file", "-e"),
    slots: int | None = typer.Option(None, "--slots", min=1, help="Concurrent slots (default: the module's)."),
    host: str | None = typer.Option(None, "--host", help="Host name to act as (default: this machine's)."),
    work_root: Path | None = typer.Option(None, "--work-root", help="Where task work directories are made."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds in-flight tasks get after SIGTERM."),
    consumer_config: list[str] = typer.Option([], "--consumer-config", help="librdkafka consumer KEY=VALUE."),
    kafka: str | None = typer.Option(None, "--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one agent of one module until SIGTERM."""
    from scalebox_stream.agent.identity import AgentIdentity
    from scalebox_stream.agent.loop import Agent, AgentOptions
    from scalebox_stream.kafka.app_registry import lookup_app
    from scalebox_stream.local.home import scalebox_home

    setup_logging(verbose)
    cli = settings(kafka)
    bootstrap = connect(cli, ("kafka",)).kafka
    env_files: tuple[Path, ...] = tuple(env_file)
    if app_file is None:
        record = lookup_app(bootstrap, app_name)
        if record is None:
            fail(f"app {app_name!r} is not deployed (no record in sbx.apps); give --app-file")
        app_file, env_files = record.source, env_files or record.env_files
    if app_sha256 is not None and (found := file_sha256(app_file)) != app_sha256.strip().lower():
        fail(f"{app_file} has SHA-256 {found}, not the pinned {app_sha256} (--app-sha256): not running it")
    try:
        spec = load_app(app_file, env_files)
    except SpecError as exc:
        fail(str(exc))
    if spec.name != app_name:
        fail(f"{app_file} defines app {spec.name!r}, not {app_name!r}")
    if module not in spec.modules:
        fail(f"app {app_name!r} has no module {module!r} (modules: {', '.join(spec.modules)})")
    # The cluster stamped on its events: SCALEBOX_CLUSTER, else the one the app file places the module on.
    identity = AgentIdentity(app_name, module, cluster=cli.cluster or spec.cluster_of(module),
                             **({"host": host} if host else {}))
    overrides = dict(item.split("=", 1) for item in consumer_config if "=" in item)
    if len(overrides) != len(consumer_config):
        fail("--consumer-config takes KEY=VALUE")
    options = AgentOptions(slots=slots or spec.modules[module].slots,
                           work_root=work_root or scalebox_home() / "work", grace_seconds=grace,
                           consumer_overrides=overrides, metrics_port=metrics_port)
    Agent(spec, identity, bootstrap, options).run()


ProcessesOption = typer.Option(1, "--processes", min=1, help="Projector processes in the group (one per core "
                                "projects fastest; process i serves metrics on metrics-port + i).")


def projector(
    batch_size: int = typer.Option(1000, "--batch-size", min=1),
    batch_wait_ms: int | None = typer.Option(None, "--batch-wait-ms", min=0, max=300_000,
                                             help="How long events may gather before the projector is handed "
                                                  "them (default 100; the projection lags by up to this much "
                                                  "more; 0: at once)."),
    processes: int = ProcessesOption,
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Exit once every partition is read."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Project the events topic into PostgreSQL (the task perspective)."""
    from scalebox_stream.launch.operations import prepare_shared_topics
    from scalebox_stream.projector.group import ProjectorConfig, run_projectors
    from scalebox_stream.projector.settings import ProjectorSettings

    setup_logging(verbose)
    conns = connections(kafka, pg)
    prepare_shared_topics(conns.kafka)
    projector_settings = ProjectorSettings(batch_size=batch_size)
    if batch_wait_ms is not None:
        projector_settings = replace(projector_settings, batch_wait_ms=batch_wait_ms)
    config = ProjectorConfig(conns.kafka, conns.pg, projector_settings, metrics_port=metrics_port)
    try:
        stats = run_projectors(config, processes, until_caught_up=until_caught_up)
    except RuntimeError as exc:
        fail(explain(exc))
    typer.echo(f"projected {stats.events} event(s) in {stats.batches} batch(es); "
               f"{stats.dead_letters} dead-lettered", err=True)


def replay(
    batch_size: int = typer.Option(1000, "--batch-size", min=1),
    processes: int = ProcessesOption,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    allow_gaps: bool = typer.Option(False, "--allow-gaps", help=(
        "Rebuild even if the events topic lost its oldest events (to a retention or deleted records); "
        "without it, replay refuses and names what is gone.")),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Drop the projection and rebuild it from the log (stop running projectors first)."""
    from scalebox_stream.launch.errors import OperationError
    from scalebox_stream.launch.operations import drop_projection
    from scalebox_stream.projector.group import ProjectorConfig, run_projectors
    from scalebox_stream.projector.settings import ProjectorSettings

    conns = connections(kafka, pg)
    if not yes:
        typer.confirm("Drop the task perspective tables and rebuild them from Kafka?", abort=True)
    try:
        lost = drop_projection(conns.kafka, conns.pg, allow_gaps=allow_gaps)
    except OperationError as exc:
        fail(str(exc), exc.code)
    if lost:
        typer.secho(f"warning: {lost}\nThe rebuilt projection lacks the tasks of those events.",
                    fg=typer.colors.YELLOW, err=True)
    try:
        stats = run_projectors(ProjectorConfig(conns.kafka, conns.pg, ProjectorSettings(batch_size=batch_size)),
                               processes,
                               until_caught_up=True)
    except RuntimeError as exc:
        fail(explain(exc))
    typer.echo(f"replayed {stats.events} event(s) ({stats.applied} applied, {stats.dead_letters} dead-lettered)")
