"""``scalebox local up|down|status``: run Kafka and PostgreSQL on this machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from scalebox_stream.local import services

app = typer.Typer(
    help="Run a single-node Kafka (KRaft) and an embedded PostgreSQL on this machine.",
    no_args_is_help=True,
)


def _fail(exc: services.LocalServiceError) -> typer.Exit:
    """Print the error without a traceback; exit 2 for a missing prerequisite, 1 otherwise."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, services.MissingPrerequisite) else 1)


@app.command()
def up(
    kafka_port: Annotated[int | None, typer.Option(help="Kafka broker port [default: 19092]")] = None,
    controller_port: Annotated[int | None, typer.Option(help="Controller port [default: 19093]")] = None,
    pg_port: Annotated[int | None, typer.Option(help="PostgreSQL port [default: 15432]")] = None,
    timeout: Annotated[float, typer.Option(help=(
        "Seconds to wait for PostgreSQL; for Kafka, the longest its log may stay silent (a broker recovering "
        "many partitions takes minutes while its log advances)"))] = 90.0,
    secure: Annotated[bool | None, typer.Option("--secure/--insecure", help=(
        "--secure (the default): SCRAM logins for Kafka, scram-sha-256 passwords for PostgreSQL, credentials "
        "(mode 600) under the Scalebox home, picked up by every command of that home. --insecure: Kafka "
        "without authentication (any local user can read and write every topic), remembered for this home "
        "[default: secure, unless this home's last `up` said --insecure]"))] = None,
    internal_port: Annotated[int | None, typer.Option(help="The secured broker's mutual-TLS listener "
                                                           "[default: 19094]")] = None,
) -> None:
    """Start Kafka and PostgreSQL (no-op if running) and print how to reach them."""
    try:
        ends = services.up(kafka_port, controller_port, pg_port, timeout=timeout, secure=secure,
                           internal_port=internal_port)
    except services.LocalServiceError as exc:
        raise _fail(exc) from None
    typer.echo(f"kafka bootstrap: {ends.kafka_bootstrap}")
    typer.echo(f"postgres dsn:    {ends.pg_dsn}")
    if notice := services.upgrade_notice():
        typer.echo(notice, err=True)
    from scalebox_stream.config import CliSettings
    from scalebox_stream.launch.gc import collect_after

    if said := collect_after(ends.kafka_bootstrap, ends.pg_dsn, CliSettings.load().app_retention_s):
        typer.echo(said)


@app.command()
def down() -> None:
    """Stop Kafka and PostgreSQL (data is kept)."""
    _stop_each(services.down, lambda was_running: "stopped" if was_running else "was not running")


@app.command()
def reset(yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False) -> None:
    """Stop Kafka and PostgreSQL and delete their data (every topic and the projection); `up` starts them empty."""
    where = services.status()["home"]
    if not yes and not typer.confirm(f"Delete every topic and the projection under {where}?"):
        raise typer.Exit(1)
    _stop_each(services.reset, lambda was_running: f"{'stopped, ' if was_running else ''}data deleted")


def _stop_each(stop: Callable[[], dict[str, bool]], said: Callable[[bool], str]) -> None:
    """Run `stop` (which says, per service, whether it was running) and print one line per service."""
    try:
        stopped = stop()
    except services.LocalServiceError as exc:
        raise _fail(exc) from None
    for name, was_running in stopped.items():
        typer.echo(f"{name}: {said(was_running)}")


def _mb(n: Any) -> str:
    return f"{n / 2**20:.0f} MiB" if isinstance(n, int) else "?"


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Show what runs where: pid, address, data dir."""
    info = services.status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"home: {info['home']}")
    k, p = info["kafka"], info["postgres"]
    if k["running"]:
        typer.echo(f"kafka:    running pid={k['pid']} bootstrap={k['bootstrap']} rss={_mb(k['rss_bytes'])}")
        typer.echo(f"          data={k['data_dir']} log={k['log']}")
    else:
        typer.echo(f"kafka:    stopped (data={k['data_dir']})")
    if p["running"]:
        typer.echo(f"postgres: running pid={p['pid']} dsn={p['dsn']} rss={_mb(p['rss_bytes'])}")
        typer.echo(f"          data={p['data_dir']} log={p['log']}")
    else:
        typer.echo(f"postgres: stopped (data={p['data_dir']})")


@app.command()
def repair(
    max_minutes: Annotated[int, typer.Option(help="Abort transactions open longer than this")] = 2,
) -> None:
    """Abort transactions left hanging on the local broker (after a broker restart mid-transaction)."""
    from scalebox_stream.local import hanging

    info = services.status()["kafka"]
    if not info.get("running"):
        typer.echo("error: the local Kafka is not running", err=True)
        raise typer.Exit(1)
    failed: RuntimeError | None = None
    try:
        aborted = hanging.abort_hanging(info["bootstrap"], max_minutes)
    except services.LocalServiceError as exc:
        raise _fail(exc) from None
    except hanging.AbortIncomplete as exc:
        aborted, failed = exc.aborted, exc
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for h in aborted:
        typer.echo(f"aborted a hanging transaction on {h.topic}[{h.partition}] from offset {h.start_offset}")
    typer.echo(f"{len(aborted)} hanging transaction(s) aborted")
    if failed is not None:
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(1)
