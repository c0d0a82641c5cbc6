"""`scalebox task ...`: add tasks and read the task perspective."""

from __future__ import annotations

from datetime import datetime

import psycopg
import typer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from scalebox_stream.cli.common import KafkaOption, PgOption, connections, fail, print_json
from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import admin_config, producer_config
from scalebox_stream.kafka.task_publisher import flush_or_fail, publish_task
from scalebox_stream.kafka.topics import task_topic
from scalebox_stream.projector import queries

app = typer.Typer(help="Add tasks and inspect them.", no_args_is_help=True)


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """`k=v` pairs to a dict; a pair without `=` is an error."""
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"bad header {pair!r}: expected key=value")
        headers[key] = value
    return headers


@app.command("add")
def add(
    bodies: list[str] = typer.Argument(..., help="Task bodies, one task each."),
    app_name: str = typer.Option(..., "--app", help="App name."),
    module: str = typer.Option(..., "--module", help="Target module."),
    header: list[str] = typer.Option([], "--header", "-h", help="Header key=value (repeatable)."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Send tasks to a module of a deployed app; prints their ids."""
    conns = connections(kafka, pg)
    topic = task_topic(app_name, module)
    if topic not in AdminClient(admin_config(conns.kafka)).list_topics(timeout=15).topics:
        fail(f"no topic {topic}: is app {app_name!r} with module {module!r} deployed (scalebox run)?")
    producer, codec = Producer(producer_config(conns.kafka)), EventCodec()
    ids = [publish_task(producer, codec, app_name, module, body, parse_headers(header)) for body in bodies]
    flush_or_fail(producer)
    for task_id in ids:
        typer.echo(task_id)


@app.command("list")
def list_(
    app_name: str | None = typer.Option(None, "--app"),
    module: str | None = typer.Option(None, "--module"),
    status: str | None = typer.Option(None, "--status"),
    host: str | None = typer.Option(None, "--host"),
    since: datetime | None = typer.Option(None, "--since", help="Only tasks created at or after this time."),
    limit: int | None = typer.Option(None, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="A JSON array for scripts."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """List tasks with their status, exit code, attempts, host and custom output."""
    conns = connections(kafka, pg)
    with psycopg.connect(conns.pg) as conn:
        rows = queries.list_tasks(conn, app_name, module, status, host, since, limit)
    if as_json:
        print_json(rows)
        return
    table = Table("task_id", "app", "module", "body", "status", "exit", "attempts", "host", "custom_out")
    for r in rows:
        table.add_row(r["task_id"], r["app"], r["module"], _short(r["body"]), r["status"],
                      _text(r["exit_code"]), str(r["attempts"]), r["host"] or "", _short(r["custom_out"]))
    Console().print(table)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _short(value: str | None, width: int = 40) -> str:
    text = (value or "").strip().replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
