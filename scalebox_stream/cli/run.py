"""`scalebox run APP_YAML [BODY ...]`: deploy an app, run it to completion on local agents, summarize."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from scalebox_stream.cli.common import KafkaOption, PgOption, connect, explain, fail, print_warnings, settings
from scalebox_stream.cli.task import parse_headers, task_bodies
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.inputs import tasks_problem
from scalebox_stream.launch.progress import table
from scalebox_stream.launch.run import RunRequest, run_app, start_tasks
from scalebox_stream.spec import SpecError, load_app


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
    print_warnings(spec.warnings)
    if module is not None and module not in spec.modules:
        fail(f"app {spec.name!r} has no module {module!r}")
    headers = parse_headers(header)
    sends = start_tasks(spec, task_bodies(bodies or [], headers), module)
    if not sends:
        fail("nothing to run: give task bodies or set start_task in the app file")
    if problem := tasks_problem([body for _, body in sends], headers):  # start tasks of the app file too
        fail(problem)
    request = RunRequest(app_file, tuple(sends), tuple(env_file), headers, timeout, metrics_port)
    cli = settings(kafka, pg)
    conns = connect(cli)
    try:
        result = run_app(spec, request, cli, conns, console)
    except OperationError as exc:
        fail(str(exc), exc.code)
    except (RuntimeError, TimeoutError) as exc:
        fail(explain(exc), code=1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(table(result.state, f"{spec.name}: finished in {result.elapsed_s:.1f}s"))
    from scalebox_stream.launch.gc import collect_after

    if said := collect_after(conns.kafka, conns.pg, cli.app_retention_s, finished=(spec.name,)):
        console.print(said)
    if result.state.failed:
        console.print(f"[red]{result.state.failed} task(s) failed[/]")
        raise typer.Exit(1)
