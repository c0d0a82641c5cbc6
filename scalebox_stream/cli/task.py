"""`scalebox task ...`: add tasks and read the task perspective."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from scalebox_stream.cli.common import (
    KafkaOption,
    PgOption,
    connect,
    connections,
    explain,
    fail,
    print_json,
    settings,
)
from scalebox_stream.cli.tables import WideOption, field_text, print_fields, print_task_table
from scalebox_stream.config import CliSettings
from scalebox_stream.launch import views

app = typer.Typer(help="Add tasks and inspect them.", no_args_is_help=True)


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """`k=v` pairs to a dict; a pair without `=`, a bad key or value, or headers over the size limit end the
    command (exit 2)."""
    from scalebox_stream.launch.inputs import parse_header_pairs

    headers, problem = parse_header_pairs(pairs)
    if problem:
        fail(problem)
    return headers


def task_bodies(given: Sequence[str], headers: dict[str, str]) -> list[str]:
    """The bodies given as arguments, or (for a lone `-`) stdin's lines, read as bytes so that bytes that are
    not UTF-8 are refused with the rest: any body too large, with a NUL byte or not UTF-8 ends the command
    (exit 2) before anything is sent."""
    from scalebox_stream.launch.inputs import body_lines, tasks_problem

    bodies = body_lines(sys.stdin.buffer.read()) if list(given) == ["-"] else list(given)
    if problem := tasks_problem(bodies, headers):
        fail(problem)
    return bodies


@app.command("add")
def add(
    bodies: list[str] = typer.Argument(None, help="Task bodies, one task each; `body,{json headers}` adds headers "
                                                  "('-' reads one per line from stdin)."),
    app_name: str | None = typer.Option(None, "--app", "--app-id", envvar="APP_ID", help="App name (env APP_ID)."),
    module: str | None = typer.Option(None, "--module", "--sink-module", envvar="SINK_MODULE",
                                      help="Target module (env SINK_MODULE; default: the app's main router, else "
                                           "its entry module)."),
    header: list[str] = typer.Option([], "--header", "-h", "-H", help="Header key=value (repeatable)."),
    headers_json: str | None = typer.Option(None, "--headers", help="Headers as one JSON object."),
    task_file: Path | None = typer.Option(None, "--task-file", help="A file of tasks, one per line: `body`, "
                                                                    "`body,{headers}` or `module,body[,{headers}]`."),
    to_host: str | None = typer.Option(None, "--to-host", help="The to_host header: a HOST-BOUND module runs the "
                                                               "tasks on that host."),
    to_ip: str | None = typer.Option(None, "--to-ip", help="The to_ip header."),
    conflict: str | None = typer.Option(None, "--conflict-action", envvar="CONFLICT_ACTION",
                                        help="A body the module already has: (nothing) is an error, IGNORE skips "
                                             "it, OVERWRITE runs it again."),
    ignore_dupkey: bool = typer.Option(False, "--ignore-dupkey", help="Add `repeatable: yes`: send a repeated "
                                                                      "body anyway."),
    module_id: str | None = typer.Option(None, "--module-id", "--job-id", envvar="MODULE_ID",
                                         help="The sending module (env MODULE_ID; a module's name here, so the app "
                                              "still comes from --app-id): the tasks' from_module header."),
    from_module: str | None = typer.Option(None, "--from-module", help="The from_module header (over --module-id)."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Send tasks to a module of a deployed app, all in one transaction; prints their ids."""
    from scalebox_stream.launch.cli_tasks import add_cli_tasks, conflict_action, parse_items
    from scalebox_stream.launch.errors import OperationError

    if not app_name:
        why = f"--module-id {module_id!r} is a module's name here and names no app; " if module_id else ""
        fail(f"no app: {why}give --app (or --app-id), or set APP_ID")
    headers = parse_headers(header)
    extra = {"to_host": to_host, "to_ip": to_ip, "repeatable": "yes" if ignore_dupkey else None,
             "from_module": from_module or module_id}
    headers = {**_json_headers(headers_json), **headers}
    if "from_module" in headers:  # a header given as such wins over --module-id
        extra.pop("from_module")
    headers.update({k: v for k, v in extra.items() if v})
    bodies = task_bodies(bodies or [], headers)
    try:
        items = [(None, body, h) for _, body, h in parse_items(bodies)]
        if task_file is not None:
            items += parse_items(_file_lines(task_file), _modules_of(settings(kafka, pg), app_name))
        action = conflict_action(conflict)
    except OperationError as exc:
        fail(str(exc), exc.code)
    if not items:
        fail("no task bodies given")
    cli = settings(kafka, pg)
    conns = connect(cli)
    try:
        added = add_cli_tasks(cli, conns.kafka, conns.pg, app_name, module, items, headers, action)
    except OperationError as exc:
        fail(str(exc), exc.code)
    except RuntimeError as exc:
        fail(explain(exc), code=1)
    for task in added.skipped:
        typer.echo(f"skipped: {task.module} already has body {task.body!r}", err=True)
    for task_id in added.ids:
        typer.echo(task_id)


def _json_headers(text: str | None) -> dict[str, str]:
    """`--headers '{"k":"v"}'` as a dict (values that are not strings as JSON); bad JSON ends the command."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--headers is not JSON: {exc}")
    if not isinstance(data, dict):
        fail("--headers must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def _file_lines(path: Path) -> list[str]:
    """The lines of a task file (split on `\n` only); a missing file ends the command."""
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")


def _modules_of(cli: CliSettings, app_name: str) -> list[str]:
    """The app's modules, for task-file lines that name one (none if the app's file is not known here)."""
    from scalebox_stream.launch.cli_tasks import app_spec

    spec = app_spec(connect(cli, ("kafka",)).kafka, app_name)
    return [] if spec is None else list(spec.modules)


@app.command("list")
def list_(
    app_name: str | None = typer.Option(None, "--app"),
    module: str | None = typer.Option(None, "--module"),
    status: str | None = typer.Option(None, "--status"),
    host: str | None = typer.Option(None, "--host"),
    since: datetime | None = typer.Option(None, "--since", help="Only tasks created at or after this time."),
    limit: int | None = typer.Option(None, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="A JSON array for scripts."),
    wide: bool = WideOption,
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """List tasks with their status, exit code, attempts, host and custom output (ids: a unique prefix,
    for `task show`)."""
    pg_dsn = connections(kafka, pg, ("pg",)).pg
    rows = views.list_tasks(pg_dsn, app_name, module, status, host, since, limit)
    if as_json:
        print_json(rows)
        return
    print_task_table(rows, {} if wide else views.short_task_ids(pg_dsn, [r["task_id"] for r in rows]),
                     with_app=app_name is None, wide=wide)


def _short(value: str | None, width: int = 40) -> str:
    text = (value or "").strip().replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _detail_or_fail(read: Callable[[str, str], views.TaskDetail], pg: str, task_id: str) -> views.TaskDetail:
    try:
        return read(pg, task_id)
    except RuntimeError as exc:
        fail(explain(exc), code=1)


RUN_SECTIONS = {
    "identity": ("cluster", "host", "slot", "agent", "executor", "image", "container_id"),
    "outcome": ("status", "exit_code", "signal", "timed_out", "retry_rule", "error", "status_code"),
    "i/o": ("input_bytes", "output_bytes", "read_bytes", "write_bytes", "stdout_bytes", "stderr_bytes"),
    "resources": ("cpu_user_s", "cpu_system_s", "peak_memory_bytes"),
    "times": ("created_at", "accepted_at", "started_at", "finished_at", "recorded_at", "queue_wait_s", "run_s",
              "end_to_end_s"),
}


@app.command("show")
def show(
    task_id: str = typer.Argument(..., help="Task id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Every attempt of a task with every recorded field, stdout and stderr included."""
    detail = _detail_or_fail(views.task_detail, connections(kafka, pg, ("pg",)).pg, task_id)
    task, runs = detail.task, detail.attempts
    if as_json:
        print_json({**task, "attempts_detail": runs, "children": detail.children})
        return
    console = Console()
    head = [f"{task['app']}/{task['module']}", f"status {task['status']}", f"attempts {task['attempts']}",
            f"parent {task['parent_task_id'] or '-'}"]
    print_fields(console, f"task {task['task_id']}", head)
    console.print(f"body: {task['body']!r}\nheaders: {task['headers']}", markup=False, highlight=False)
    for run in runs:
        console.rule(f"attempt {run['attempt']}")
        for section, fields in RUN_SECTIONS.items():
            print_fields(console, f"{section}:", [f"{f}={field_text(run[f])}" for f in fields if run[f] is not None])
        stamps = ", ".join(f"{s.get('label') or '-'}@{s['at']}" for s in run["user_timestamps"])
        console.print(f"[bold]user timestamps[/]: {escape(stamps or '-')}")
        if run.get("extra_attributes") is not None:
            console.print("[bold]extra attributes[/]:")
            console.print(json.dumps(run["extra_attributes"], ensure_ascii=False, sort_keys=True),
                          markup=False, highlight=False)
        for name in ("custom_out", "message_text", "stdout", "stderr"):
            if run[name]:
                console.print(f"[bold]{name}[/]:")
                console.print(run[name], markup=False, highlight=False)


@app.command("lineage")
def lineage(
    task_id: str = typer.Argument(..., help="Task id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json"),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """A task's ancestors and descendants as a tree."""
    from rich.tree import Tree

    pg_dsn = connections(kafka, pg, ("pg",)).pg
    detail = _detail_or_fail(views.task_lineage, pg_dsn, task_id)
    task, up, down = detail.task, detail.ancestors, detail.descendants
    if as_json:
        print_json({"ancestors": up, "task": task, "descendants": down})
        return
    short = views.short_task_ids(pg_dsn, [t["task_id"] for t in (*up, task, *down)])

    def label(t: dict, mark: bool = False) -> str:
        text = escape(f"{t['module']} {short[t['task_id']]} {_short(t['body'], 30)!r} [{t['status']}]")
        return f"[bold]{text}[/]" if mark else text

    root = tree = Tree(label(up[0]) if up else label(task, True))
    for ancestor in up[1:]:
        tree = tree.add(label(ancestor))
    node = tree.add(label(task, True)) if up else root
    nodes = {task["task_id"]: node}
    for child in down:
        nodes[child["task_id"]] = nodes[child["edge_parent"]].add(label(child))
    Console().print(root)
