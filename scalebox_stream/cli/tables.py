"""Tables on the terminal: plain columns fitted to its width (`policy.display.fit_columns`), ids, statuses
and numbers never cut, long text cut with an ellipsis, the columns that do not fit named on stderr; `--wide`
draws every column whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scalebox_stream.policy.display import Column, fit_columns, pack_fields

WideOption = typer.Option(False, "--wide", "-w", help="Every column, whole (long ids, bodies, times), however wide.")

STATUS_STYLES = {"failed": "red", "succeeded": "green", "suspended": "red"}


@dataclass(frozen=True)
class Col:
    """A column: its header; whether its cells may be cut (free text) or never (ids, statuses, numbers); its
    rank (lower ranks give way first on a narrow terminal); numbers are right-aligned."""

    header: str
    rank: int
    cut: bool = False
    cut_to: int = 10
    number: bool = False


Cell = str | Text


def one_line(value: object) -> str:
    """A cell's text on one line ("" for None)."""
    return "" if value is None else " ".join(str(value).split())


def status_text(status: str) -> Text:
    """A status, coloured when it is an end or a stop."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def fitted(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], width: int, wide: bool = False,
           title: str | None = None) -> tuple[Table, list[str]]:
    """The table drawn in `width` columns (or whole with `wide`), and the headers of the columns left out."""
    naturals = [max([cell_len(c.header)] + [cell_len(_plain(row[i])) for row in rows]) for i, c in enumerate(cols)]
    policy = [Column(c.header, n, min(c.cut_to, n) if c.cut else n, c.rank) for c, n in zip(cols, naturals,
                                                                                           strict=True)]
    widths = {c.header: n for c, n in zip(cols, naturals, strict=True)} if wide else fit_columns(policy, width)
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", title=title,
                  title_justify="left", collapse_padding=False)
    kept = [i for i, c in enumerate(cols) if c.header in widths]
    for i in kept:
        c = cols[i]
        table.add_column(c.header, width=widths[c.header], no_wrap=True, justify="right" if c.number else "left",
                         overflow="ellipsis" if c.cut else "fold")
    for row in rows:
        table.add_row(*(row[i] if isinstance(row[i], Text) else Text(row[i]) for i in kept))
    return table, [c.header for c in cols if c.header not in widths]


def print_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], wide: bool = False,
                title: str | None = None, console: Console | None = None) -> None:
    """Print a fitted table on stdout (every column whole with `wide`); name the columns left out on stderr."""
    console = console or Console()
    table, hidden = fitted(cols, rows, console.width, wide, title)
    if wide:
        console = Console(width=max(console.width, _total_width(table)), soft_wrap=False)
    console.print(table)
    if hidden:
        Console(stderr=True).print(Text(f"(not shown: {', '.join(hidden)}; --wide shows them)", style="dim"))


def _total_width(table: Table) -> int:
    widths = [c.width or 0 for c in table.columns]
    return sum(widths) + 2 * max(0, len(widths) - 1) + 1


TASK_COLUMNS = (Col("id", 10), Col("app", 3), Col("module", 8),
                Col("status", 9), Col("exit", 5, number=True), Col("attempts", 6, number=True),
                Col("host", 2, cut=True, cut_to=8), Col("body", 7, cut=True, cut_to=12),
                Col("custom_out", 1, cut=True, cut_to=12))


def print_task_table(rows: Sequence[dict], short: dict[str, str], with_app: bool = True,
                     wide: bool = False) -> None:
    """`scalebox task list`: one task a line; ids as their short prefix (`short`), whole when not in it."""
    cols = [c for c in TASK_COLUMNS if with_app or c.header != "app"]
    cells = []
    for r in rows:
        row: dict[str, Cell] = {
            "id": short.get(r["task_id"], r["task_id"]), "app": r["app"], "module": r["module"],
            "status": status_text(r["status"]), "exit": one_line(r["exit_code"]), "attempts": str(r["attempts"]),
            "host": one_line(r["host"]), "body": one_line(r["body"]), "custom_out": one_line(r["custom_out"])}
        cells.append([row[c.header] for c in cols])
    print_table(cols, cells, wide)


APP_COLUMNS = (Col("app", 10), Col("state", 9), Col("modules", 4, cut=True, cut_to=12),
               Col("tasks", 8, number=True), Col("succeeded", 8, number=True), Col("failed", 8, number=True),
               Col("in flight", 7, number=True), Col("deployed", 6), Col("finished", 5),
               Col("result", 3, cut=True, cut_to=12))


def when(value: object) -> str:
    """A time to the second, "" for None."""
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def print_app_table(rows: Sequence[dict], wide: bool = False) -> None:
    """`scalebox app list`: one app a line."""
    print_table(APP_COLUMNS, [[r["app"], status_text(r.get("state") or ""), ", ".join(r["modules"]), str(r["tasks"]),
                               str(r["succeeded"]), str(r["failed"]), str(r["in_flight"]), when(r["deployed_at"]),
                               when(r["finished_at"]), one_line(r.get("result"))] for r in rows], wide)


def field_text(value: object) -> str:
    """A field's value as one word where it can be: times in ISO form (`2026-12-05T00:10:45.929674+00:00`)."""
    return value.isoformat() if isinstance(value, datetime) else one_line(value)


def print_fields(console: Console, head: str, items: Sequence[str]) -> None:
    """`head item  item ...` (head in bold), wrapped between items to the console's width."""
    for i, line in enumerate(pack_fields(head, items, console.width)):
        text = Text(line)
        if i == 0:
            text.stylize("bold", 0, len(head))
        console.print(text, highlight=False, soft_wrap=True)
