"""Helpers shared by the CLI commands: connections, error exits, output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NoReturn

import typer

from scalebox_stream.config import CliSettings, Connections

Service = Literal["kafka", "pg"]
BOTH: tuple[Service, ...] = ("kafka", "pg")
_in_use: Connections | None = None
"""The services the running command talks to (for `ScaleboxApp` to name them when one fails)."""

KafkaOption = typer.Option(None, "--kafka", help="Kafka bootstrap servers (env SCALEBOX_KAFKA; default: local).")
PgOption = typer.Option(None, "--pg", help="PostgreSQL DSN (env SCALEBOX_PG; default: local).")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error without a traceback and exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def explain(exc: BaseException) -> str:
    """The message for an error a command reports: one line naming Kafka or PostgreSQL if it means one is out
    of reach, else the error's own message."""
    from scalebox_stream.launch.services import describe_outage

    return describe_outage(exc, _in_use) or str(exc)


def settings(kafka: str | None = None, pg: str | None = None) -> CliSettings:
    """The command's settings: its `--kafka`/`--pg` flags, then the environment, then defaults."""
    return CliSettings.load(kafka=kafka, pg=pg)


def connect(cli: CliSettings, need: tuple[Service, ...] = BOTH) -> Connections:
    """The settings' Kafka and PostgreSQL, else the local services (started if needed, and only if one the
    command needs is not given), each needed one asked once: set-up problems and services out of reach become
    one-line exits. A service the command does not need may be "" in the result."""
    from scalebox_stream.launch.services import ServiceDown, probe_kafka, probe_pg
    from scalebox_stream.local.services import connections as resolve

    global _in_use
    given = Connections(cli.kafka or "", cli.pg or "")
    if all(getattr(given, service) for service in need):
        conns = given
    else:
        try:
            conns = resolve(cli)
        except Exception as exc:  # MissingPrerequisite, LocalServiceError, RuntimeError: all user-facing
            fail(str(exc))
    _in_use = conns
    try:
        if "kafka" in need:
            probe_kafka(conns.kafka, cli.probe_timeout_s)
        if "pg" in need:
            probe_pg(conns.pg, cli.probe_timeout_s)
    except ServiceDown as exc:
        fail(str(exc), exc.code)
    return conns


def connections(kafka: str | None, pg: str | None, need: tuple[Service, ...] = BOTH) -> Connections:
    """`connect` with the settings of these flags."""
    return connect(settings(kafka, pg), need)


class ScaleboxApp(typer.Typer):
    """The `scalebox` command: an exception that means Kafka or PostgreSQL went out of reach while a command
    ran (after its start-up probe passed) ends it with one line naming the service, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from scalebox_stream.launch.services import EXIT_UNREACHABLE, describe_outage

        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            message = describe_outage(exc, _in_use)
            if message is None:
                raise
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            sys.exit(EXIT_UNREACHABLE)


def print_warnings(warnings: Iterable[object]) -> None:
    """Each of an app file's warnings (`file:line: field: message`) on stderr, prefixed `warning:`."""
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_verbose = False
"""`scalebox --verbose`: library and engine logs reach the terminal too."""


def setup_logging(verbose: bool = False) -> None:
    """The long-running commands (agent, projector, mirror, state-owner): plain timestamped logs on stderr,
    which `scalebox run` points at each child's log file. Replaces the CLI's file logging."""
    logging.basicConfig(level=logging.DEBUG if verbose or _verbose else logging.INFO, stream=sys.stderr,
                        format=LOG_FORMAT, force=True)


def cli_logging(log_file: Path, verbose: bool = False) -> None:
    """A short-lived command's logs (its own and its libraries': librdkafka, psycopg) go to `log_file`, so
    that only the command's own lines reach the terminal; with `verbose`, to stderr as well."""
    global _verbose
    _verbose = _verbose or verbose
    handlers: list[logging.Handler] = []
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    except OSError:
        pass  # an unwritable home: the logs are lost, never shown
    if _verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        handlers.append(logging.NullHandler())
    logging.basicConfig(level=logging.DEBUG if _verbose else logging.INFO, format=LOG_FORMAT, handlers=handlers,
                        force=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def print_json(data: Any) -> None:
    """Print JSON for scripts."""
    typer.echo(json.dumps(data, default=_json_default, indent=2))
