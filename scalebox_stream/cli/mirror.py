"""`scalebox mirror`: run MirrorMaker 2 for an app whose modules run on several Kafka clusters."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from scalebox_stream.cli.common import connections, fail, settings, setup_logging
from scalebox_stream.spec import SpecError, load_app


def mirror(
    app_files: list[Path] = typer.Argument(..., help="The app files whose modules name their `cluster` (every app "
                                                    "that spans these clusters: one mirror serves them all)."),
    cluster: list[str] = typer.Option([], "--cluster", "-c",
                                      help="NAME=BOOTSTRAP of each cluster (the app's home defaults to --kafka)."),
    env_file: list[Path] = typer.Option([], "--env-file", "-e"),
    replication_factor: int = typer.Option(3, "--replication-factor", min=1,
                                           help="Of the topics MirrorMaker 2 creates (1 on single-node clusters)."),
    print_only: bool = typer.Option(False, "--print", help="Print the MirrorMaker 2 configuration and exit."),
    kafka: str | None = typer.Option(None, "--kafka", help="The home cluster's bootstrap (env SCALEBOX_KAFKA)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Copy apps' task topics to the clusters that run their modules, and their events home, until SIGTERM."""
    from scalebox_stream.launch.errors import OperationError
    from scalebox_stream.launch.mirror import CLEAN_EXITS, plan_mirror, probe_clusters, start_mirror

    setup_logging(verbose)
    specs = []
    for app_file in app_files:
        try:
            specs.append(load_app(app_file, tuple(env_file)))
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file")
        except SpecError as exc:
            fail(str(exc))
    bootstraps = dict(item.split("=", 1) for item in cluster if "=" in item)
    if len(bootstraps) != len(cluster):
        fail("--cluster takes NAME=BOOTSTRAP")
    try:
        plan = plan_mirror(specs, bootstraps, lambda: kafka or connections(None, None, ("kafka",)).kafka,
                           replication_factor)
    except OperationError as exc:
        fail(str(exc), exc.code)
    if print_only:
        typer.echo(plan.printable, nl=False)
        return
    try:
        probe_clusters(plan, settings(kafka).probe_timeout_s)
    except OperationError as exc:
        fail(str(exc), exc.code)
    run = start_mirror(plan)
    for flow in plan.flows:
        typer.echo(f"{flow.source} -> {flow.target}: {len(flow.topics)} topic pattern(s)", err=True)
    typer.echo(f"MirrorMaker 2 running (pid {run.process.pid}); configuration and log in {run.work}", err=True)
    code = run.wait()
    if code not in CLEAN_EXITS:
        typer.echo(f"MirrorMaker 2 exited with code {code}:\n{run.log_tail()}", err=True)
        sys.exit(1)
