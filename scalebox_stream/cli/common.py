"""Helpers shared by the CLI commands: connections, error exits, output."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import typer

from scalebox_stream.config import CliSettings, Connections

KafkaOption = typer.Option(None, "--kafka", help="Kafka bootstrap servers (env SCALEBOX_KAFKA; default: local).")
PgOption = typer.Option(None, "--pg", help="PostgreSQL DSN (env SCALEBOX_PG; default: local).")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error without a traceback and exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings(kafka: str | None = None, pg: str | None = None) -> CliSettings:
    """The command's settings: its `--kafka`/`--pg` flags, then the environment, then defaults."""
    return CliSettings.load(kafka=kafka, pg=pg)


def connect(cli: CliSettings) -> Connections:
    """The settings' Kafka and PostgreSQL, else the local services (started if needed); set-up problems become
    clear exits."""
    from scalebox_stream.local.services import connections as resolve

    try:
        return resolve(cli)
    except Exception as exc:  # MissingPrerequisite, LocalServiceError, RuntimeError: all user-facing
        fail(str(exc))


def connections(kafka: str | None, pg: str | None) -> Connections:
    """`connect` with the settings of these flags."""
    return connect(settings(kafka, pg))


def setup_logging(verbose: bool = False) -> None:
    """Plain timestamped logs on stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
