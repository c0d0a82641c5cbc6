"""`scalebox status`: per module, tasks created, waiting, running, succeeded and failed."""

from __future__ import annotations

import typer

from scalebox_stream.cli.common import KafkaOption, PgOption, connections, print_json
from scalebox_stream.cli.tables import Col, WideOption, print_table, status_text
from scalebox_stream.launch.views import PERCENTILES, RECENT_S, TIMINGS, status_view

COLUMNS = ("created", "waiting", "running", "succeeded", "failed", "attempts")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


COUNT_RANKS = {"created": 8, "waiting": 7, "running": 7, "succeeded": 8, "failed": 8, "attempts": 5}
STATUS_COLUMNS = (Col("app", 9), Col("module", 10), Col("state", 6),
                  *(Col(c, COUNT_RANKS[c], number=True) for c in COLUMNS),
                  Col("queue wait p50/p95/p99", 2), Col("run time p50/p95/p99", 3))


def print_status(rows: list[dict], with_app: bool = True, wide: bool = False) -> None:
    """The per-module table fitted to the terminal: counts first; the times when they fit (or `--wide`)."""
    cols = [c for c in STATUS_COLUMNS if with_app or c.header != "app"]
    cells = []
    for r in rows:
        timing = ["/".join(_seconds(r[name][p]) for p in PERCENTILES) for name in TIMINGS]
        row = [r.get("app", ""), r["module"], status_text(r.get("state", "active")), *(str(r[c]) for c in COLUMNS),
               *timing]
        cells.append(row if with_app else row[1:])
    print_table(cols, cells, wide)


def status(
    app_name: str | None = typer.Option(None, "--app"),
    as_json: bool = typer.Option(False, "--json"),
    every_app: bool = typer.Option(False, "--all", help="Every app, also those finished over an hour ago."),
    wide: bool = WideOption,
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Show per-module task counts and queue-wait and run-time percentiles: of the apps not finished or finished
    within the last hour (--all: every app; --app: one)."""
    view = status_view(connections(kafka, pg, ("pg",)).pg, app_name, every_app)
    if as_json:
        print_json(view.rows)
        return
    print_status(view.rows, with_app=app_name is None, wide=wide)
    if view.hidden_apps:
        typer.echo(f"{view.hidden_apps} app(s) finished over {RECENT_S / 3600:g} h ago not shown (--all shows them)",
                   err=True)
