"""`scalebox mirror`: run MirrorMaker 2 for an app whose modules run on several Kafka clusters."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

import typer

from scalebox_stream.cli.common import connections, fail, setup_logging
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
    from scalebox_stream.mirror import runner
    from scalebox_stream.mirror.flows import clusters, merged
    from scalebox_stream.mirror.properties import render

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
        planned = merged(specs)  # first: apps with different homes cannot be mirrored together at all
    except ValueError as exc:
        fail(str(exc))
    home = specs[0].cluster
    if not planned:
        fail(f"every module runs on the home cluster {home!r}: nothing to mirror")
    if home not in bootstraps:
        bootstraps[home] = kafka or connections(None, None).kafka
    spanned = list(dict.fromkeys(name for spec in specs for name in clusters(spec)))
    if unknown := sorted(set(bootstraps) - set(spanned)):
        fail(f"no app runs a module on cluster(s) {', '.join(unknown)} (their clusters: {', '.join(spanned)})")
    if missing := [name for name in spanned if name not in bootstraps]:
        fail(f"no bootstrap servers for cluster(s) {', '.join(missing)}: give --cluster NAME=BOOTSTRAP")
    properties = render(planned, bootstraps, replication_factor)
    if print_only:
        typer.echo(properties, nl=False)
        return
    work = Path(tempfile.mkdtemp(prefix=f"sbx-mirror-{home}-"))
    (work / "mm2.properties").write_text(properties)
    proc = runner.start(work / "mm2.properties", work / "mirror.log")
    for flow in planned:
        typer.echo(f"{flow.source} -> {flow.target}: {len(flow.topics)} topic pattern(s)", err=True)
    typer.echo(f"MirrorMaker 2 running (pid {proc.pid}); configuration and log in {work}", err=True)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    if code not in (0, 130, 143, -signal.SIGTERM, -signal.SIGINT):
        tail = (work / "mirror.log").read_text()[-3000:] if (work / "mirror.log").exists() else ""
        typer.echo(f"MirrorMaker 2 exited with code {code}:\n{tail}", err=True)
        sys.exit(1)
