"""`scalebox app ...`: inspect apps and app files, clean up finished apps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    kafka: Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap (env SCALEBOX_KAFKA).")] = None,
    pg: Annotated[str | None, typer.Option("--pg", help="PostgreSQL DSN (env SCALEBOX_PG).")] = None,
) -> None:
    """Deployed apps with their modules and task counts."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from scalebox_stream.cli.common import connections, print_json
    from scalebox_stream.launch.views import list_apps as apps

    rows = apps(connections(kafka, pg, ("pg",)).pg)
    if as_json:
        print_json(rows)
        return
    table = Table("app", "modules", "tasks", "succeeded", "failed", "in flight", "deployed", "finished")
    for r in rows:
        table.add_row(*(escape(cell) for cell in (
            r["app"], ", ".join(r["modules"]), str(r["tasks"]), str(r["succeeded"]), str(r["failed"]),
            str(r["in_flight"]), _when(r["deployed_at"]), _when(r["finished_at"]))))
    Console().print(table)


def _when(value: object) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


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
