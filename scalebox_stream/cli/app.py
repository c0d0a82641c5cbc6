"""`scalebox app ...`: inspect apps and app files, clean up finished apps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalebox_stream.cli import run as run_cmd
from scalebox_stream.executors.lockdown import refused_volume, volume_roots
from scalebox_stream.spec import AppSpec, ModuleSpec, SpecError, load_app
from scalebox_stream.spec.model import CONTAINER_EXECUTORS

app = typer.Typer(help="Inspect apps and app files; clean up finished apps.", no_args_is_help=True)

EXIT_INVALID = 2


@app.callback()
def _group() -> None:
    """Inspect apps and app files; clean up finished apps."""


@app.command("list")
def list_apps(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array for scripts.")] = False,
    wide: Annotated[bool, typer.Option("--wide", "-w", help="Every column, whole, however wide.")] = False,
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
    pg: Annotated[str | None, typer.Option("--pg", help="PostgreSQL DSN (env SCALEBOX_PG).")] = None,
) -> None:
    """Deployed apps with their state (RUNNING, FINISHED), modules, task counts and result text."""
    from scalebox_stream.cli.common import connections, print_json
    from scalebox_stream.cli.tables import print_app_table
    from scalebox_stream.launch.results import app_states
    from scalebox_stream.launch.views import list_apps as apps

    dsn = connections(kafka, pg, ("pg",)).pg
    rows = apps(dsn)
    states = app_states(dsn)
    for r in rows:
        r.update(states.get(r["app"], {"state": "RUNNING", "result": None}))
    if as_json:
        print_json(rows)
        return
    print_app_table(rows, wide)


@app.command("clean")
def clean(
    name: Annotated[str, typer.Argument(help="The app's name.")],
    force: Annotated[bool, typer.Option("--force", help="Delete the topics even while agents of the app run.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
) -> None:
    """Delete a finished app's task topics and its agents' consumer groups; its records stay (event log and
    perspective). Refuses while agents of the app run, unless --force."""
    from scalebox_stream.cli.common import connections, explain, fail
    from scalebox_stream.launch.operations import app_leftovers, remove_leftovers

    bootstrap = connections(kafka, None, ("kafka",)).kafka
    try:
        leftovers = app_leftovers(bootstrap, name, force)
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    for topic in leftovers.topics:
        typer.echo(f"topic {topic}")
    for group in leftovers.groups:
        typer.echo(f"group {group}" + (" (has members: kept)" if group in leftovers.busy_groups else ""))
    if dry_run:
        return
    try:
        remove_leftovers(bootstrap, leftovers)
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    kept = len(leftovers.busy_groups)
    typer.echo(f"deleted {len(leftovers.topics)} topics and {len(leftovers.groups) - kept} consumer groups of {name}")


@app.command("gc")
def gc(
    retention: Annotated[float | None, typer.Option(
        "--retention", help="Seconds since an app finished before its topics go; 0: at once "
                            "[default: env SCALEBOX_APP_RETENTION_S, else 3600].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
    pg: Annotated[str | None, typer.Option("--pg", help="PostgreSQL DSN (env SCALEBOX_PG).")] = None,
) -> None:
    """Delete the task topics and consumer groups of every app finished the retention period ago (`app clean`
    for each); apps whose agents still run are kept. Their records stay (event log and perspective)."""
    from scalebox_stream.cli.common import connect, explain, fail, settings
    from scalebox_stream.launch.gc import collect

    cli = settings(kafka, pg)
    conns = connect(cli)
    keep = cli.app_retention_s if retention is None else retention
    if keep < 0:
        fail("--retention must be 0 or more seconds", code=EXIT_INVALID)
    try:
        done = collect(conns.kafka, conns.pg, keep, dry_run=dry_run)
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    for c in done:
        what = f"{len(c.topics)} topics, {len(c.groups)} consumer groups"
        typer.echo(f"{c.app}: {what}" + (" (agents still run: kept)" if c.skipped else ""))
    gone = [c for c in done if not c.skipped]
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {sum(len(c.topics) for c in gone)} topics of {len(gone)} finished app(s)")


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="The app file (app.yaml).")],
    env_file: Annotated[list[Path] | None, typer.Option(
        "--env-file", "-e", help="Extra KEY=value file for ${VAR} templating (repeatable).")] = None,
) -> None:
    """Check an app file; print a summary, or every problem with its file, line and field (exit 2)."""
    if not file.is_file():
        what = "is a directory, not an app file" if file.is_dir() else "no such file"
        typer.echo(f"error: {file}: {what}", err=True)
        raise typer.Exit(EXIT_INVALID)
    try:
        spec = load_app(file, env_files=env_file or ())
    except SpecError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        count = len(exc.issues)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    from scalebox_stream.cli.common import print_warnings
    from scalebox_stream.launch.operations import executor_problems

    print_warnings(spec.warnings)
    problems = [*executor_problems(spec), *refused_volumes(spec)]
    if problems:
        for problem in problems:
            typer.echo(f"{file}: {problem}", err=True)
        typer.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
        raise typer.Exit(EXIT_INVALID)
    typer.echo(summary(spec))


def refused_volumes(spec: AppSpec) -> list[str]:
    """`modules.<m>.volumes[i]: why` for each container volume this host's allow-list refuses (the agents check
    again with theirs, before any container is created)."""
    roots = volume_roots((spec.app_dir, spec.cluster_data_dir))
    return [f"modules.{name}.volumes[{i}]: {why}" for name, module in spec.modules.items()
            if module.executor in CONTAINER_EXECUTORS
            for i, volume in enumerate(module.volumes) if (why := refused_volume(volume, roots)) is not None]


def summary(spec: AppSpec) -> str:
    """A few lines describing an app: name, entry module, then one line per module."""
    head = f"app {spec.name}" + (f" ({spec.label})" if spec.label else "")
    lines = [f"{head}: {len(spec.modules)} module{'s' if len(spec.modules) != 1 else ''}, "
             f"entry {spec.entry_module()}" + (f", main router {spec.main_router}" if spec.main_router else "")]
    width = max(len(name) for name in spec.modules)
    for name, module in spec.modules.items():
        sinks = ",".join(spec.sinks_of(name)) or "-"
        where = f"  cluster={spec.cluster_of(name)}" if spec.cluster_of(name) != "local" else ""
        lines.append(f"  {name:<{width}}  {_runs(module)}  slots={module.slots}  sinks={sinks}{where}")
    return "\n".join(lines)


def _runs(module: ModuleSpec) -> str:
    """`docker myorg/calc:v1 /app/bin/run.sh` or `process /abs/run.sh --flag`."""
    command = " ".join(module.command)
    if module.executor == "process":
        return f"process {command}"
    return f"{module.executor} {module.image} {command}"


@app.command("create")
def create(
    file: Annotated[Path | None, typer.Argument(help="The app file (default ./app.yaml, else an app from ./code).")]
    = None,
    env_file: Annotated[list[Path] | None, typer.Option("--env-file", "-e", help="Extra env file (repeatable).")]
    = None,
    app_name: run_cmd.AppName = None,
    image_name: run_cmd.ImageName = None,
    code_path: run_cmd.CodePath = None,
    slot_regex: run_cmd.SlotRegex = None,
    mr_image_name: run_cmd.MrImageName = None,
    mr_code_path: run_cmd.MrCodePath = None,
    executor: run_cmd.ExecutorName = None,
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
    pg: Annotated[str | None, typer.Option("--pg", help="PostgreSQL DSN (env SCALEBOX_PG).")] = None,
) -> None:
    """Deploy an app and keep it served (agents and projector detached, outliving this command) until it is
    finished (`app set-finished`) or stopped (`app stop`, `app delete`); prints {"app_id":NAME}."""
    from rich.console import Console

    from scalebox_stream.cli.common import settings
    from scalebox_stream.launch.quick_app import QuickOptions

    cli = settings(kafka, pg)
    quick = QuickOptions(app_name, image_name, code_path, slot_regex, mr_image_name, mr_code_path, executor)
    chosen = run_cmd.choose_app([], file, tuple(env_file or ()), quick, cli.home)
    spec = run_cmd.load_or_fail(chosen.app_file, chosen.env_files)
    run_cmd.create_and_serve(spec, chosen, cli, Console(stderr=True))


@app.command("serve", hidden=True)
def serve(
    name: Annotated[str, typer.Argument(help="The app's name.")],
    app_file: Annotated[Path, typer.Option("--app-file", help="Its app file.")],
    env_file: Annotated[list[Path] | None, typer.Option("--env-file", "-e")] = None,
) -> None:
    """The detached server `app create` starts: the app's agents and projector until it is finished."""
    from scalebox_stream.cli.common import connect, explain, fail, settings, setup_logging
    from scalebox_stream.launch.serve import serve_app

    setup_logging()
    spec = run_cmd.load_or_fail(app_file, tuple(env_file or ()))
    if spec.name != name:
        fail(f"{app_file} defines app {spec.name!r}, not {name!r}")
    cli = settings()
    try:
        end = serve_app(spec, app_file, tuple(env_file or ()), cli, connect(cli))
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    typer.echo(f"{name}: " + ("stopped" if end.result is None else f"finished: {end.result}"))


@app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="The app's name.")]) -> None:
    """Stop serving an app created with `app create` (its agents and projector end; its topics stay)."""
    from scalebox_stream.cli.common import fail, settings
    from scalebox_stream.launch.serve import stop_server

    if not stop_server(settings().home, name):
        fail(f"app {name!r} is not served on this machine", code=1)
    typer.echo(f"{name}: stopped")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The app's name.")],
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
) -> None:
    """Stop serving an app (if it is served here), then delete its task topics and consumer groups, as
    `app clean` does; its records stay."""
    from scalebox_stream.cli.common import settings
    from scalebox_stream.launch.serve import stop_server

    if stop_server(settings(kafka).home, name):
        typer.echo(f"{name}: stopped")
    clean(name, force=False, dry_run=False, kafka=kafka)
