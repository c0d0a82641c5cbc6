"""`scalebox cluster check-status`, `scalebox host list|check-status`, `scalebox logs` and `scalebox version`:
the hosts agents run on, and what those agents wrote."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from scalebox_stream import __version__
from scalebox_stream.cli.common import KafkaOption, connections, fail, print_json
from scalebox_stream.launch.hosts import HostRow, host_rows, probe_rows, read_presence
from scalebox_stream.launch.logs import show_logs
from scalebox_stream.local.home import scalebox_home
from scalebox_stream.spec import SpecError, load_app
from scalebox_stream.spec.cluster import ClusterDef, ClusterError, home_clusters, local_cluster, parse_clusters

cluster_app = typer.Typer(help="Clusters: their hosts, reachable or not.", no_args_is_help=True)
host_app = typer.Typer(help="Hosts: agents and heartbeats.", no_args_is_help=True)
AppFileOption = typer.Option(None, "--app-file", help="Also read the clusters: of this app file.")


def version() -> None:
    """Print this scalebox-stream's version (what placement over SSH checks on each host)."""
    typer.echo(f"scalebox-stream {__version__}")


def _clusters(app_file: Path | None, name: str | None) -> list[ClusterDef]:
    """The clusters defined under the Scalebox home and in `app_file`, or only `name`."""
    try:
        found = home_clusters(scalebox_home())
        if app_file is not None:
            found.update(parse_clusters(load_app(app_file).clusters, str(app_file)))
    except (ClusterError, SpecError) as exc:
        fail(str(exc))
    except FileNotFoundError as exc:
        fail(f"{exc.filename}: no such file")
    found.setdefault("local", local_cluster("local"))
    if name is not None:
        if name not in found:
            fail(f"no cluster {name!r} (defined: {', '.join(sorted(found))}); see docs/clusters.md")
        return [found[name]]
    return list(found.values())


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s ago"


def _table(rows: list[HostRow], probed: bool, title: str) -> Table:
    columns = ["cluster", "host", "address", "start", "status", "agents", "last heartbeat"]
    table = Table(*columns, *(["reachable", "version"] if probed else []), title=title)
    colors = {"up": "green", "down": "red"}
    for r in rows:
        status = f"[{colors[r.status]}]{r.status}[/]" if r.status in colors else r.status
        table.add_row(r.cluster, r.host, r.address, r.start, status, ", ".join(r.agents) or "-",
                      _age(r.heartbeat_age_s), *([r.reachable, r.version] if probed else []))
    return table


def _show(clusters: list[ClusterDef], host: str | None, probe: bool, as_json: bool, kafka: str | None) -> None:
    board = read_presence(connections(kafka, None, ("kafka",)).kafka)
    now = time.time()
    rows: list[HostRow] = []
    for cluster in clusters:
        mine = [r for r in host_rows(cluster, board, now) if host is None or r.host == host]
        rows += probe_rows(cluster, mine) if probe else mine
    if host is not None and not rows:
        fail(f"no host {host!r} in {', '.join(c.name for c in clusters)}")
    if as_json:
        print_json([r.__dict__ for r in rows])
    else:
        Console().print(_table(rows, probe, "hosts"))


@host_app.command("list")
def host_list(
    cluster: str | None = typer.Option(None, "--cluster", "-c"),
    app_file: Path | None = AppFileOption,
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
) -> None:
    """Each host: its agents and how long ago one last renewed its presence (down: gone quiet)."""
    _show(_clusters(app_file, cluster), None, False, as_json, kafka)


@host_app.command("check-status")
def host_check_status(
    host: str | None = typer.Argument(None, help="One host (default: all)."),
    cluster: str | None = typer.Option(None, "--cluster", "-c"),
    app_file: Path | None = AppFileOption,
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
) -> None:
    """Each host (or one): as `host list`, and whether it answers (SSH, Slurm) with a compatible version."""
    _show(_clusters(app_file, cluster), host, True, as_json, kafka)


@cluster_app.command("check-status")
def cluster_check_status(
    name: str | None = typer.Argument(None, help="One cluster (default: all)."),
    app_file: Path | None = AppFileOption,
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
) -> None:
    """Every host of the cluster(s): reachability, version, agents and last heartbeat."""
    _show(_clusters(app_file, name), None, True, as_json, kafka)


def logs(
    app_name: str = typer.Argument(..., help="The app whose agents' logs to show."),
    module: str | None = typer.Option(None, "--module", "-m"),
    host: str | None = typer.Option(None, "--host"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing as they grow."),
) -> None:
    """The logs of an app's agents from its last run, wherever they ran (here, over SSH, Slurm output)."""
    log_dir = scalebox_home() / "logs" / app_name
    if not log_dir.is_dir():
        fail(f"no logs of app {app_name!r} under {log_dir.parent}")
    if show_logs(log_dir, module, host, follow) == 0:
        fail(f"no agent of app {app_name!r} matches" + (f" --module {module}" if module else "")
             + (f" --host {host}" if host else ""))
