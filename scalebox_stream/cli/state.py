"""`scalebox semaphore|semagroup|variable|global ...`, `scalebox app set-finished` and `scalebox state-owner`.

Scalebox's names, output and return codes (0 ok, 1 error or refusal, 2 not found). The app comes from `--app`
(or `--app-id`), else `APP_ID`, else `APP`: Scalebox scripts run `APP_ID=$app scalebox semaphore get NAME`.
Each command parses, calls one function of `scalebox_stream.state.api` and prints its outcome. While no owner
serves the state (no `scalebox run` or `scalebox state-owner` is running), the command runs one of its own for
its duration.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from scalebox_stream.cli.common import setup_logging

AppOption = Annotated[str | None, typer.Option("--app", "--app-id", help="The app (env APP_ID, else APP).")]
ModuleIdOption = Annotated[str | None, typer.Option(
    "--module-id", "--job-id", envvar="MODULE_ID",
    help="Scalebox's module id (env MODULE_ID): here a module's name, which names no app, so the app still comes "
         "from --app-id or APP_ID.")]
KafkaOpt = Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap servers (env SCALEBOX_KAFKA).")]
AutoCreate = Annotated[bool, typer.Option("--auto-create", help="Create a missing semaphore at 0 "
                                                                "(env SEMAPHORE_AUTO_CREATE=yes).")]
AllowNegative = Annotated[bool, typer.Option("--allow-negative", help="Let the value go below zero "
                                                                      "(env SEMAPHORE_ALLOW_NEGATIVE=yes).")]
NEGATIVE_NUMBERS = {"ignore_unknown_options": True}
"""So that `increment-n NAME -3` reads -3 as the number, not as an option."""

semaphore = typer.Typer(help="Semaphores: integer counters of an app, on the log.", no_args_is_help=True)
semagroup_app = typer.Typer(help="Operations over the semaphores a prefix or pattern matches.", no_args_is_help=True)
variable = typer.Typer(help="Variables: text values of an app, on the log.", no_args_is_help=True)
global_app = typer.Typer(help="Globals: text values shared by every app, on the log.", no_args_is_help=True)


def _yes(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() in ("yes", "y", "true", "1")


def _app(app: str | None, module_id: str | None = None) -> str:
    """The app a command acts on. Scalebox finds it from a module id too; here a module id is a module's name,
    shared by every app with such a module, so it never picks the app."""
    resolved = app or os.environ.get("APP_ID") or os.environ.get("APP")
    if not resolved:
        why = (f"--module-id {module_id!r} is a module's name here and names no app; " if module_id else "")
        typer.secho(f"error: no app: {why}give --app (or --app-id), or set APP_ID", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    return resolved


def _bootstrap(kafka: str | None) -> str:
    if kafka or os.environ.get("SCALEBOX_KAFKA"):
        return kafka or os.environ["SCALEBOX_KAFKA"]
    from scalebox_stream.cli.common import connections

    return connections(None, None).kafka


def _call(kafka: str | None, operation_name: str, *args: Any, **kwargs: Any) -> None:
    """Run `state.api.<operation_name>`, print its output and error, exit with its code."""
    from scalebox_stream.state import api

    outcome = api.run(_bootstrap(kafka), getattr(api, operation_name), *args, serve=True, **kwargs)
    if outcome.output is not None:
        typer.echo(outcome.output)
    if outcome.error:
        typer.secho(f"error: {outcome.error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(outcome.code)


@semaphore.command("create")
def semaphore_create(
    name: Annotated[str | None, typer.Argument(help='The name, or a JSON map {"semaphores":{"s1":n1,...}}.')] = None,
    value: Annotated[int | None, typer.Argument(help="The initial value (not with a JSON map).")] = None,
    sema_file: Annotated[Path | None, typer.Option("--sema-file", help='A file of lines "name":value.')] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="How many creates are in flight at "
                                                                 "once.")] = 100,
    app: AppOption = None, module_id: ModuleIdOption = None, kafka: KafkaOpt = None) -> None:
    """Create a semaphore, or many (a JSON map, or --sema-file); an existing one is an error unless
    CONFLICT_ACTION=IGNORE or OVERWRITE."""
    conflict = os.environ.get("CONFLICT_ACTION", "error")
    many = _semaphores_to_create(name, value, sema_file)
    if many is None:
        _call(kafka, "semaphore_create", _app(app, module_id), name, value, conflict)
    else:
        _call(kafka, "semaphore_create_many", _app(app, module_id), many, conflict, batch_size)


def _semaphores_to_create(name: str | None, value: int | None, sema_file: Path | None) -> dict[str, int] | None:
    """The semaphores of a batch create (None: one NAME VALUE); a usage error exits 1."""
    from scalebox_stream.state import api

    def fail(message: str) -> NoReturn:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    text = None
    if sema_file is not None:
        try:
            text = sema_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the sema file {sema_file}: {exc}")
    args = [str(a) for a in (name, value) if a is not None]
    try:
        many = api.semaphores_to_create(args, text, str(sema_file))
    except ValueError as exc:
        fail(str(exc))
    if many is None and name is None:
        fail("give NAME VALUE, a JSON map of semaphores, or --sema-file FILE")
    if many is None and value is None:
        fail(f"semaphore create {name}: VALUE is missing")
    return many


@semaphore.command("get")
def semaphore_get(name: str, app: AppOption = None, module_id: ModuleIdOption = None, auto_create: AutoCreate = False,
                  kafka: KafkaOpt = None) -> None:
    """Print a semaphore's value (code 2 if there is none); a pattern prints a JSON map."""
    _call(kafka, "semaphore_get", _app(app, module_id), name, auto_create or _yes("SEMAPHORE_AUTO_CREATE"))


def _add(name: str, n: int, app: str, auto_create: bool, allow_negative: bool, kafka: str | None) -> None:
    _call(kafka, "semaphore_add", app, name, n, auto_create or _yes("SEMAPHORE_AUTO_CREATE"),
          allow_negative or _yes("SEMAPHORE_ALLOW_NEGATIVE"))


@semaphore.command("increment")
def semaphore_increment(name: str, app: AppOption = None, module_id: ModuleIdOption = None,
                        auto_create: AutoCreate = False, kafka: KafkaOpt = None) -> None:
    """Add one; print the new value (a JSON map for a pattern)."""
    _add(name, 1, _app(app, module_id), auto_create, False, kafka)


@semaphore.command("decrement")
def semaphore_decrement(name: str, app: AppOption = None, module_id: ModuleIdOption = None,
                        auto_create: AutoCreate = False, allow_negative: AllowNegative = False,
                        kafka: KafkaOpt = None) -> None:
    """Subtract one; print the new value. Refused (code 1) if it would go below zero, unless allowed."""
    _add(name, -1, _app(app, module_id), auto_create, allow_negative, kafka)


@semaphore.command("increment-n", context_settings=NEGATIVE_NUMBERS)
def semaphore_increment_n(name: str, n: int, app: AppOption = None, module_id: ModuleIdOption = None,
                          auto_create: AutoCreate = False, allow_negative: AllowNegative = False,
                          kafka: KafkaOpt = None) -> None:
    """Add N (may be negative); print the new value."""
    _add(name, n, _app(app, module_id), auto_create, allow_negative, kafka)


@semaphore.command("add-value", context_settings=NEGATIVE_NUMBERS)
def semaphore_add_value(name: str, delta: int, app: AppOption = None, module_id: ModuleIdOption = None,
                        auto_create: AutoCreate = False, allow_negative: AllowNegative = False,
                        kafka: KafkaOpt = None) -> None:
    """Add DELTA (may be negative); print the new value. Scalebox's name for increment-n."""
    _add(name, delta, _app(app, module_id), auto_create, allow_negative, kafka)


@semaphore.command("delete")
def semaphore_delete(name: str, app: AppOption = None, module_id: ModuleIdOption = None,
                     kafka: KafkaOpt = None) -> None:
    """Delete a semaphore (code 2 if there is none)."""
    _call(kafka, "delete", "semaphore", _app(app, module_id), name)


PatternArg = Annotated[str, typer.Argument(help="Only names matching this regular expression.")]
PrefixOption = Annotated[str, typer.Option("--prefix", help="Only names beginning with this.")]
LeafOnly = Annotated[bool, typer.Option("--leaf-only", help="Only leaves of the names' ':' hierarchy (no other "
                                                            "name extends them past a ':').")]


@semaphore.command("list")
def semaphore_list(pattern: PatternArg = "", prefix: PrefixOption = "", leaf_only: LeafOnly = False,
                   app: AppOption = None, module_id: ModuleIdOption = None, kafka: KafkaOpt = None) -> None:
    """Print the app's semaphores as a JSON map."""
    _call(kafka, "list_items", "semaphore", _app(app, module_id), pattern, prefix, leaf_only)


def _semagroup(op: str) -> None:
    def command(expr: str, app: AppOption = None, module_id: ModuleIdOption = None,
                allow_negative: AllowNegative = False, kafka: KafkaOpt = None) -> None:
        _call(kafka, "semagroup", _app(app, module_id), op, expr, allow_negative or _yes("SEMAPHORE_ALLOW_NEGATIVE"))

    command.__doc__ = {
        "min": "Print the lowest member as \"name\":value.",
        "max": "Print the highest member as \"name\":value.",
        "increment": "Add one to the lowest member; print it as \"name\":value.",
        "decrement": "Subtract one from the highest member; print it as \"name\":value.",
        "diffmin": "(PREFIX)SUFFIX: print member PREFIX+SUFFIX minus the lowest of PREFIX.*.",
        "diffmax": "(PREFIX)SUFFIX: print the highest of PREFIX.* minus member PREFIX+SUFFIX.",
    }[op]
    semagroup_app.command(op)(command)


for _op in ("min", "max", "increment", "decrement", "diffmin", "diffmax"):
    _semagroup(_op)


@variable.command("get")
def variable_get(name: str, app: AppOption = None, module_id: ModuleIdOption = None, kafka: KafkaOpt = None) -> None:
    """Print a variable (code 2 if unset); a pattern prints a JSON map."""
    _call(kafka, "variable_get", _app(app, module_id), name)


@variable.command("set")
def variable_set(name: str, value: str, app: AppOption = None, module_id: ModuleIdOption = None,
                 kafka: KafkaOpt = None) -> None:
    """Set a variable of the app."""
    _call(kafka, "variable_set", _app(app, module_id), name, value)


@variable.command("list")
def variable_list(pattern: PatternArg = "", prefix: PrefixOption = "", leaf_only: LeafOnly = False,
                  app: AppOption = None, module_id: ModuleIdOption = None, kafka: KafkaOpt = None) -> None:
    """Print the app's variables as a JSON map."""
    _call(kafka, "list_items", "variable", _app(app, module_id), pattern, prefix, leaf_only)


@variable.command("delete")
def variable_delete(name: str, app: AppOption = None, module_id: ModuleIdOption = None,
                    kafka: KafkaOpt = None) -> None:
    """Delete a variable of the app (code 2 if there is none)."""
    _call(kafka, "delete", "variable", _app(app, module_id), name)


@global_app.command("get")
def global_get(name: str, kafka: KafkaOpt = None) -> None:
    """Print a global (code 2 if unset)."""
    _call(kafka, "global_get", name)


@global_app.command("set")
def global_set(name: str, value: str, kafka: KafkaOpt = None) -> None:
    """Set a global."""
    _call(kafka, "global_set", name, value)


@global_app.command("list")
def global_list(pattern: PatternArg = "", prefix: PrefixOption = "", leaf_only: LeafOnly = False,
                kafka: KafkaOpt = None) -> None:
    """Print the globals as a JSON map."""
    _call(kafka, "list_items", "global", "", pattern, prefix, leaf_only)


@global_app.command("delete")
def global_delete(name: str, kafka: KafkaOpt = None) -> None:
    """Delete a global (code 2 if there is none)."""
    _call(kafka, "delete", "global", "", name)


def app_set_finished(text: Annotated[str, typer.Argument(help="The app's result.")], app: AppOption = None,
                     module_id: ModuleIdOption = None, kafka: KafkaOpt = None) -> None:
    """Mark the app finished with a result text (shown by the projection)."""
    _call(kafka, "app_set_finished", _app(app, module_id), text)


def state_owner(
    owner_id: Annotated[str | None, typer.Option("--owner-id", help="This owner's id (default HOST.0); a restarted "
                                                                    "owner with the same id takes over at once. "
                                                                    "Two live owners need two ids.")] = None,
    ephemeral: Annotated[bool, typer.Option("--ephemeral", help="Leave the owners' group when stopped, so the "
                                                                "other owners take over at once (scalebox run's "
                                                                "owner); the id is then HOST.PID.")] = False,
    kafka: KafkaOpt = None,
    with_apps: Annotated[bool, typer.Option("--with-apps", help="Stop once none of the apps this machine's service "
                                                                "owner serves runs (the owner `app create` "
                                                                "starts).")] = False,
    apps_grace_s: Annotated[float, typer.Option("--apps-grace-s", help="With --with-apps: an app added this "
                                                                       "recently counts as running.")] = 120.0,
    unreachable_s: Annotated[float | None, typer.Option("--unreachable-s", help="Stop when no broker answered "
                                                                               "for this long (default: "
                                                                               "never).")] = None,
    check_s: Annotated[float, typer.Option("--check-s", help="How often the cluster (and the apps) are "
                                                             "checked.")] = 5.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a state owner (semaphores, variables, globals) until SIGTERM, or until its cluster is another one (a
    new broker at its address)."""
    from scalebox_stream.state.service import serve

    setup_logging(verbose)
    if ephemeral and owner_id is None:
        owner_id = f"{socket.gethostname()}.{os.getpid()}"
    bootstrap = _bootstrap(kafka)
    needed = None
    if with_apps:
        from scalebox_stream.launch.state_service import still_serving
        from scalebox_stream.local.home import scalebox_home

        home, pid = scalebox_home(), os.getpid()
        needed = lambda: still_serving(home, bootstrap, pid, apps_grace_s)  # noqa: E731
    try:
        stats = serve(bootstrap, owner_id, static=not ephemeral, unreachable_s=unreachable_s, needed=needed,
                      check_s=check_s)
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(stats.summary(), err=True)
