"""`scalebox status`: per module, tasks created, waiting, running, succeeded and failed."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from scalebox_stream.cli.common import KafkaOption, PgOption, connections, print_json
from scalebox_stream.launch.views import PERCENTILES, RECENT_S, TIMINGS, status_view

COLUMNS = ("created", "waiting", "running", "succeeded", "failed", "attempts")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def status_table(rows: list[dict], title: str | None = None) -> Table:
    """A per-module table of task counts and queue-wait / run-time percentiles."""
    table = Table("app", "module", "state", *COLUMNS, "queue wait p50/p95/p99", "run time p50/p95/p99",
                  title=title)
    for r in rows:
        timing = ["/".join(_seconds(r[name][p]) for p in PERCENTILES) for name in TIMINGS]
        state = r.get("state", "active")
        table.add_row(r.get("app", ""), r["module"], f"[red]{state}[/]" if state == "suspended" else state,
                      *(str(r[c]) for c in COLUMNS), *timing)
    return table


def status(
    app_name: str | None = typer.Option(None, "--app"),
    as_json: bool = typer.Option(False, "--json"),
    every_app: bool = typer.Option(False, "--all", help="Every app, also those finished over an hour ago."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Show per-module task counts: of the apps not finished or finished within the last hour (--all: every
    app; --app: one)."""
    view = status_view(connections(kafka, pg, ("pg",)).pg, app_name, every_app)
    if as_json:
        print_json(view.rows)
        return
    Console().print(status_table(view.rows))
    if view.hidden_apps:
        Console().print(f"{view.hidden_apps} app(s) finished over {RECENT_S / 3600:g} h ago not shown (--all "
                        "shows them)")
