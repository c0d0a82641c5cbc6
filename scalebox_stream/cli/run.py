"""`scalebox run [APP_FILE] [BODY ...]`: deploy an app, run it to completion on local agents, summarize.

Without an app file it does what Scalebox's `app run` does: the `app.yaml` of the current directory, else a
one-module app from `./code` (main router `./mr-code`), bodies from stdin one per line. Without any start task
the app is created and served detached instead (`scalebox app create`), for `scalebox task add`. Either way the
app id is printed first on stdout as `{"app_id":NAME}`, which Scalebox's scripts cut out with
`cut -d':' -f2 | tr -d '}'`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from scalebox_stream.cli.common import KafkaOption, PgOption, connect, explain, fail, print_warnings, settings
from scalebox_stream.cli.task import parse_headers, task_bodies
from scalebox_stream.config import CliSettings
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.inputs import body_lines, tasks_problem
from scalebox_stream.launch.progress import table
from scalebox_stream.launch.quick_app import (
    APP_FILE,
    QuickAppError,
    QuickOptions,
    local_env_files,
    shapes_app,
    start_item,
    with_start_item,
)
from scalebox_stream.launch.run import RunRequest, run_app, start_tasks
from scalebox_stream.spec import AppSpec, SpecError, load_app

APP_FILE_SUFFIXES = (".yaml", ".yml")

# The options of an app made from ./code (`run` and `app create`), each also read from Scalebox's variable.
AppName = Annotated[str | None, typer.Option("--app-name", help="Name of an app made from ./code (env _APP_NAME; "
                                                                "default: the directory's name).")]
ImageName = Annotated[str | None, typer.Option("--image-name", help="Image of an app made from ./code (env "
                                                                    "_IMAGE_NAME; default: the agent image).")]
CodePath = Annotated[Path | None, typer.Option("--code-path", help="Its code directory (env _CODE_PATH; default "
                                                                   "./code), mounted at /app/bin.")]
SlotRegex = Annotated[str | None, typer.Option("--slot-regex", help="Its slots, HOST[:COUNT] (env _SLOT_REGEX; "
                                                                    "default h0: one slot on this machine).")]
MrImageName = Annotated[str | None, typer.Option("--mr-image-name", help="Image of its main router (env "
                                                                         "_MR_IMAGE_NAME; default: the agent "
                                                                         "image).")]
MrCodePath = Annotated[Path | None, typer.Option("--mr-code-path", help="Code of its main router (env "
                                                                        "_MR_CODE_PATH; default ./mr-code).")]
ExecutorName = Annotated[str | None, typer.Option("--executor", help="`process`: run the code's run.sh on this "
                                                                     "machine, no image (env _EXECUTOR).")]

ClusterName = Annotated[str | None, typer.Option("--cluster", help="The `cluster` of an app made from ./code (env "
                                                                   "_CLUSTER): its home Kafka cluster here.")]


@dataclass(frozen=True)
class Chosen:
    """The app file a run uses, its extra env files, the bodies left over, and whether the user named it."""

    app_file: Path
    env_files: tuple[Path, ...]
    bodies: list[str]
    named: bool


def print_app_id(app: str) -> None:
    """`{"app_id":NAME}` on stdout, at once: Scalebox's output, which its scripts parse with `cut -d':' -f2 |
    tr -d '}'` (so the name is not quoted: here an app's id is its name)."""
    sys.stdout.write(f'{{"app_id":{app}}}\n')
    sys.stdout.flush()


def take_start_item(args: list[str]) -> tuple[list[str], dict[str, str] | None]:
    """The arguments with Scalebox's JSON start item (`'{"image_name":...,"start_task":...}'`) taken out (its
    `start_task` stays as a body), and the item; more than one is an error."""
    items = [(index, item) for index, arg in enumerate(args) if (item := start_item(arg)) is not None]
    if not items:
        return args, None
    if len(items) > 1:
        fail("more than one JSON start item: give one, with its start_task")
    index, item = items[0]
    rest = args[:index] + ([item["start_task"]] if item.get("start_task") else []) + args[index + 1:]
    return rest, item


def choose_app(args: list[str], app_file: Path | None, env_files: tuple[Path, ...], quick: QuickOptions,
               home: Path, cwd: Path | None = None) -> Chosen:
    """The app file (`--app-file`, else a first argument ending in `.yaml`/`.yml`, else `./app.yaml`, else a
    first argument that is an existing file when there is no `./code` either, else a one-module app written
    from the code directory) and the bodies left over."""
    from scalebox_stream.launch.quick_app import quick_app_yaml, write_quick_app

    cwd = cwd or Path.cwd()
    if app_file is not None:
        return Chosen(app_file, env_files, args, True)
    if args and args[0].endswith(APP_FILE_SUFFIXES):
        return Chosen(Path(args[0]), env_files, args[1:], True)
    if (cwd / APP_FILE).is_file():
        return Chosen(cwd / APP_FILE, env_files, args, False)
    if args and Path(args[0]).is_file() and quick.code_path is None and not (cwd / "code").is_dir():
        return Chosen(Path(args[0]), env_files, args[1:], True)
    try:
        name, text = quick_app_yaml(quick, cwd)
    except QuickAppError as exc:
        fail(str(exc))
    path = write_quick_app(home, name, text)
    return Chosen(path, (*local_env_files(cwd, path), *env_files), args, False)


def start_items(chosen: Chosen, headers: dict[str, str], conflict: str | None,
                target: str) -> tuple[list[str], list[dict]]:
    """The start bodies and their own headers: the arguments (`-` reads stdin), or stdin's lines when the app
    file was not named and stdin is not a terminal; each `body,{headers}` split, a repeated body handled by
    the conflict action."""
    from scalebox_stream.launch.cli_tasks import NewTask, conflict_action, parse_items, resolve_conflicts

    if chosen.bodies or chosen.named or sys.stdin is None or sys.stdin.isatty():
        bodies = task_bodies(chosen.bodies, headers)
    else:
        bodies = body_lines(sys.stdin.buffer.read())
        if problem := tasks_problem(bodies, headers):
            fail(problem)
    try:
        items = parse_items(bodies)
        kept, _ = resolve_conflicts([NewTask(target, body, extra) for _, body, extra in items], (),
                                    conflict_action(conflict))
    except OperationError as exc:
        fail(str(exc), exc.code)
    return [t.body for t in kept], [t.headers for t in kept]


def run(
    args: list[str] = typer.Argument(None, metavar="[APP_FILE] [BODY]...",
                                     help="The app file (default ./app.yaml, else an app from ./code), then start "
                                          "task bodies ('-' reads lines from stdin)."),
    app_file: Path | None = typer.Option(None, "--app-file", "-f", help="The app file (the first argument "
                                                                        "otherwise)."),
    module: str | None = typer.Option(None, "--module", "-m", help="Module that receives the bodies."),
    env_file: list[Path] = typer.Option([], "--env-file", "-e", help="Extra env files for ${VAR} templating."),
    header: list[str] = typer.Option([], "--header", "-H", help="Header key=value for the start tasks."),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up after this many seconds."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics: the projector on this port, the agents of the home "
                                     "cluster's modules on the next ones, in the app file's order."),
    app_name: AppName = None,
    image_name: ImageName = None,
    code_path: CodePath = None,
    slot_regex: SlotRegex = None,
    mr_image_name: MrImageName = None,
    mr_code_path: MrCodePath = None,
    executor: ExecutorName = None,
    cluster: ClusterName = None,
    conflict: str | None = typer.Option(None, "--conflict-action", envvar="CONFLICT_ACTION",
                                        help="A repeated start body: (nothing) is an error, IGNORE skips it, "
                                             "OVERWRITE sends it again."),
    kafka: str | None = KafkaOption,
    pg: str | None = PgOption,
) -> None:
    """Run an app to completion: exit 0 only if every task succeeded. With no start task, create it and keep it
    served (as `scalebox app create`)."""
    console = Console(stderr=True)
    cli = settings(kafka, pg)
    quick = QuickOptions(app_name, image_name, code_path, slot_regex, mr_image_name, mr_code_path, executor, cluster)
    args, item = take_start_item(list(args or []))
    if item is not None:
        quick = with_start_item(quick, item)
    chosen = choose_app(args, app_file, tuple(env_file), quick, cli.home)
    if item is not None and shapes_app(item) and chosen.app_file.parent.parent != cli.home / "apps":
        fail(f"the JSON start item sets {', '.join(sorted(set(item) - {'start_task'}))}, which shape an app made "
             f"from ./code; this run uses {chosen.app_file}")
    spec = load_or_fail(chosen.app_file, chosen.env_files)
    if module is not None and module not in spec.modules:
        fail(f"app {spec.name!r} has no module {module!r}")
    headers = parse_headers(header)
    bodies, task_headers = start_items(chosen, headers, conflict, module or spec.entry_module())
    sends = start_tasks(spec, bodies, module)
    if problem := tasks_problem([body for _, body in sends], headers):  # start tasks of the app file too
        fail(problem)
    if not sends:
        create_and_serve(spec, chosen, cli, console)
        return
    request = RunRequest(chosen.app_file, tuple(sends), chosen.env_files, headers, timeout, metrics_port,
                         tuple(task_headers) if bodies else ())
    from scalebox_stream.cli.common import cli_logging  # the CLI's own (library) logs, next to the children's

    cli_logging(cli.home / "logs" / spec.name / "run.log")
    conns = connect(cli)
    print_app_id(spec.name)
    try:
        result = run_app(spec, request, cli, conns, console)
    except OperationError as exc:
        fail(str(exc), exc.code)
    except (RuntimeError, TimeoutError) as exc:
        fail(explain(exc), code=1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(table(result.state, f"{spec.name}: finished in {result.elapsed_s:.1f}s"))
    from scalebox_stream.launch.gc import collect_after

    if said := collect_after(conns.kafka, conns.pg, cli.app_retention_s, finished=(spec.name,)):
        console.print(said)
    if result.result is not None:
        # The app's result text (`scalebox app set-finished`), last, on stderr: stdout holds only the app id,
        # which Scalebox's scripts cut out of it.
        console.print(f"result: {result.result}", markup=False, highlight=False)
    if result.state.failed:
        console.print(f"[red]{result.state.failed} task(s) failed[/]")
        raise typer.Exit(1)


def load_or_fail(app_file: Path, env_files: tuple[Path, ...]) -> AppSpec:
    """The app file loaded, its warnings printed; a missing or bad file ends the command (exit 2)."""
    try:
        spec = load_app(app_file, env_files)
    except FileNotFoundError as exc:
        fail(f"{exc.filename}: no such file")
    except SpecError as exc:
        fail(str(exc))
    print_warnings(spec.warnings)
    return spec


def create_and_serve(spec: AppSpec, chosen: Chosen, cli: CliSettings, console: Console) -> None:
    """Deploy the app, serve it detached, print its id (`scalebox app create`, and `run` without start tasks)."""
    from scalebox_stream.launch.serve import create_app

    conns = connect(cli)
    try:
        pid, already = create_app(spec, chosen.app_file, chosen.env_files, cli, conns)
    except OperationError as exc:
        fail(str(exc), exc.code)
    except (RuntimeError, TimeoutError) as exc:
        fail(explain(exc), code=1)
    print_app_id(spec.name)
    what = "already served" if already else "created and served"
    console.print(f"{spec.name}: {what} (pid {pid}); add tasks with `scalebox task add --app-id {spec.name} BODY`, "
                  f"finish with `scalebox app set-finished --app-id {spec.name} TEXT` or `scalebox app stop "
                  f"{spec.name}`", markup=False, highlight=False)

