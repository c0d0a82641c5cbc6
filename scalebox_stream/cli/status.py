"""`scalebox status`: per module, tasks created, waiting, running, succeeded and failed."""

from __future__ import annotations

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from scalebox_stream.cli.common import KafkaOption, PgOption, connections, print_json
from scalebox_stream.projector import queries

COLUMNS = ("created", "waiting", "running", "succeeded", "failed", "attempts")


def status_table(rows: list[dict], title: str | None = None) -> Table:
    """A per-module table of task counts."""
    table = Table("app", "module", *COLUMNS, title=title)
    for r in rows:
        table.add_row(r.get("app", ""), r["module"], *(str(r[c]) for c in COLUMNS))
    return table


def status(
    app_name: str | None = typer.Option(None, "--app"),
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Show per-module task counts."""
    conns = connections(kafka, pg)
    with psycopg.connect(conns.pg) as conn:
        rows = queries.module_status(conn, app_name)
    if as_json:
        print_json(rows)
    else:
        Console().print(status_table(rows))
