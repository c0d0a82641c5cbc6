"""Tasks the user adds from the command line (`scalebox task add`, `scalebox run`'s start items), as Scalebox
reads them: extended bodies (`body,{headers}`), task files, `to_host`, and a repeated body.

**A body is a task's identity within a module** (Scalebox keeps one row per module and body). A body already
added to the module since the app's latest deployment is, by `conflict action` (`--conflict-action`, env
`CONFLICT_ACTION`):

- `error` (the default, as in Scalebox, where the insert fails): nothing is sent, exit 1 naming the body;
- `IGNORE`: that body is skipped, the others are sent;
- `OVERWRITE`: it is sent again (a new task, which runs again).

A task with the header `repeatable: yes` (`--ignore-dupkey`) is always sent. The check reads the projection,
which trails the log by a moment: a body added an instant earlier may not be seen yet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import psycopg

from scalebox_stream.agent.sink import SinkLineError, parse_sink_line
from scalebox_stream.config import CliSettings
from scalebox_stream.kafka.task_publisher import TaskSender
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.policy.routing import route
from scalebox_stream.spec.model import AppSpec

CONFLICT_ACTIONS = ("error", "ignore", "overwrite")
REPEATABLE = "repeatable"


@dataclass(frozen=True)
class NewTask:
    """One task to add: its module, body and headers."""

    module: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_items(lines: Sequence[str], modules: Collection[str] = ()) -> list[tuple[str | None, str, dict[str, str]]]:
    """(module or None, body, headers) of each non-blank line: `body`, `body,{json headers}`, and (when
    `modules` names the first field) `module,body[,{headers}]`. Raises OperationError (exit 2) naming the line."""
    items = []
    for number, line in enumerate(lines, start=1):
        try:
            message = parse_sink_line(line, modules)
        except SinkLineError as exc:
            where = f"line {number}: " if len(lines) > 1 else ""
            raise OperationError(f"{where}{exc}", code=2) from None
        if message is not None:
            items.append((message.module, message.body, message.headers))
    return items


def conflict_action(value: str | None) -> str:
    """The conflict action named by `--conflict-action` or `CONFLICT_ACTION` (blank: `error`)."""
    action = (value or "error").strip().lower() or "error"
    if action not in CONFLICT_ACTIONS:
        raise OperationError(f"conflict action {value!r}: expected one of IGNORE, OVERWRITE (or nothing)", code=2)
    return action


def resolve_conflicts(tasks: Sequence[NewTask], existing: Collection[tuple[str, str]],
                      action: str) -> tuple[list[NewTask], list[NewTask]]:
    """(tasks to send, tasks skipped) given the (module, body) pairs already added; a repeated body within
    `tasks` counts as well. With `error`, the first repeated body raises OperationError (exit 1)."""
    seen = set(existing)
    send, skipped = [], []
    for task in tasks:
        key = (task.module, task.body)
        if key in seen and action != "overwrite" and task.headers.get(REPEATABLE, "").lower() != "yes":
            if action == "error":
                raise OperationError(f"module {task.module!r} already has a task with body {task.body!r} (a body is "
                                     "a task's identity; CONFLICT_ACTION=IGNORE skips it, OVERWRITE runs it again)",
                                     code=1)
            skipped.append(task)
            continue
        seen.add(key)
        send.append(task)
    return send, skipped


EXISTING_SQL = """SELECT t.module, t.body FROM tasks t LEFT JOIN apps a ON a.app = t.app
                  WHERE t.app = %(app)s AND t.module = ANY(%(modules)s) AND t.body = ANY(%(bodies)s)
                    AND t.created_at >= COALESCE(a.deployed_at, '-infinity')"""


def existing_bodies(pg: str, app: str, tasks: Sequence[NewTask]) -> set[tuple[str, str]]:
    """The (module, body) pairs of `tasks` the module already has since the app's latest deployment."""
    if not tasks:
        return set()
    with psycopg.connect(pg) as conn:
        rows = conn.execute(EXISTING_SQL, {"app": app, "modules": sorted({t.module for t in tasks}),
                                           "bodies": sorted({t.body for t in tasks})}).fetchall()
    return {(module, body) for module, body in rows}


def placed(spec: AppSpec | None, task: NewTask) -> str | None:
    """The host whose topic a task goes to: its `to_host`, when its module is HOST-BOUND (None otherwise, or
    when the app file is not known here)."""
    if spec is None or task.module not in spec.modules:
        return None
    return route(spec.modules[task.module], None, task.headers, "").host


def placed_groups(spec: AppSpec, groups: Sequence[tuple[list[tuple[str, str]], dict[str, str]]]
                  ) -> list[tuple[list[tuple[str, str]], dict[str, str], str | None]]:
    """`scalebox run`'s (sends, headers) runs cut further where the host their tasks go to changes (a
    HOST-BOUND module's `to_host`): (sends, headers, host or None) runs, each sent on its own."""
    out: list[tuple[list[tuple[str, str]], dict[str, str], str | None]] = []
    for sends, headers in groups:
        start = len(out)
        for module, body in sends:
            host = placed(spec, NewTask(module, body, headers))
            if len(out) > start and out[-1][2] == host:
                out[-1][0].append((module, body))
            else:
                out.append(([(module, body)], headers, host))
    return out


def ensure_host_topic(kafka: str, app: str, module: str, host: str, timeout_s: float = 10.0) -> None:
    """Create the task topic of `module` on `host` if it is missing (a HOST-BOUND task sent before that host's
    agent made it)."""
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.config import admin_config
    from scalebox_stream.kafka.topics import HOST_TOPIC_PARTITIONS, ensure_topics, task_topic

    ensure_topics(AdminClient(admin_config(kafka)), {task_topic(app, module, host): HOST_TOPIC_PARTITIONS})


def send_tasks(sender: TaskSender, app: str, spec: AppSpec | None, tasks: Sequence[NewTask],
               ensure_host_topic: Callable[[str, str], None] | None = None) -> list[str]:
    """Send the tasks, consecutive ones with the same headers and host in one transaction (a host's topic made
    first by `ensure_host_topic(module, host)`); their ids, in order."""
    ids: list[str] = []
    start = 0
    while start < len(tasks):
        head = tasks[start]
        host = placed(spec, head)
        end = start + 1
        while end < len(tasks) and tasks[end].headers == head.headers and placed(spec, tasks[end]) == host:
            end += 1
        if host is not None and ensure_host_topic is not None:
            ensure_host_topic(head.module, host)
        ids += sender.send(app, [(t.module, t.body) for t in tasks[start:end]], head.headers or None, host)
        start = end
    return ids


def app_spec(kafka: str, app: str) -> AppSpec | None:
    """The deployed app's spec, from its record in `sbx.apps` (None if it has none or its file cannot be read
    here)."""
    from scalebox_stream.kafka.app_registry import lookup_app
    from scalebox_stream.spec import SpecError, load_app

    record = lookup_app(kafka, app)
    if record is None:
        return None
    try:
        return load_app(record.source, record.env_files)
    except (OSError, SpecError):
        return None


@dataclass(frozen=True)
class Added:
    """What `add_cli_tasks` sent (their ids, in order) and the repeated bodies it skipped."""

    ids: list[str]
    skipped: list[NewTask]


def add_cli_tasks(settings: CliSettings, kafka: str, pg: str, app: str, module: str | None,
                  items: Sequence[tuple[str | None, str, dict[str, str]]], headers: dict[str, str],
                  action: str) -> Added:
    """Add (module or None, body, headers) items to a deployed app: an item's module, else `module`, else the
    app's main router or entry module; `headers` under each item's own. A repeated body is handled by `action`;
    a task whose HOST-BOUND module has a `to_host` goes to that host's topic. Refuses (exit 2) a module whose
    topic is missing."""
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.config import admin_config
    from scalebox_stream.kafka.topics import HOST_TOPIC_PARTITIONS, ensure_topics, task_topic

    needs_spec = module is None or any(m is None for m, _, _ in items) or any(
        "to_host" in {**headers, **h} for _, _, h in items)
    spec = app_spec(kafka, app) if needs_spec else None
    default = module or (spec.entry_module() if spec is not None else None)
    if default is None and any(m is None for m, _, _ in items):
        raise OperationError(f"no module: give --sink-module (app {app!r} has no app file known here)", code=2)
    tasks = [NewTask(m or default or "", body, {**headers, **h}) for m, body, h in items]
    admin = AdminClient(admin_config(kafka))
    topics = admin.list_topics(timeout=settings.metadata_timeout_s).topics
    for name in sorted({t.module for t in tasks}):
        if task_topic(app, name) not in topics:
            raise OperationError(f"no topic {task_topic(app, name)}: is app {app!r} with module {name!r} deployed "
                                 "(scalebox run)?", code=2)
    send, skipped = resolve_conflicts(tasks, existing_bodies(pg, app, tasks), action)

    def host_topic(target: str, host: str) -> None:
        ensure_topics(admin, {task_topic(app, target, host): HOST_TOPIC_PARTITIONS})

    sender = TaskSender(kafka, timeout_s=settings.flush_timeout_s)
    return Added(send_tasks(sender, app, spec, send, host_topic) if send else [], skipped)
