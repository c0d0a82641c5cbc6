"""The in-task tools' shared-state requests, answered with a state client the agent owns.

A task's `scalebox semaphore increment-n NAME N` (and `semagroup`, `variable`, `global`, `app set-finished`)
reaches the agent through the slot's channel (agent/tools.py); the agent hands the two command words and the
remaining arguments here. The arguments are read as the CLI reads them (`--auto-create`, `--allow-negative`,
`--app-id X`), the environment the tool passed (`SEMAPHORE_AUTO_CREATE`, `SEMAPHORE_ALLOW_NEGATIVE`,
`CONFLICT_ACTION`) counts as in the CLI, and the app is the task's own unless `--app-id` names another. The
answer is Scalebox's code and text, as `state.api` gives it.

The client is made on the first request (an agent whose tasks never ask costs nothing) and closed with the
handler; a client that cannot be made (no state topics: no owner ever ran) is an error (code 1) for that
request only, and the next request tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from scalebox_stream.state import api
from scalebox_stream.state.api import Outcome
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import ERROR, GLOBAL, SEMAPHORE, VARIABLE, StateTopics

log = logging.getLogger(__name__)
SEMA_FILE_NAME, SEMA_FILE_TEXT = "--sema-file-name", "--sema-file-text"
"""How the in-task tool forwards a `--sema-file`: its name (for messages) and its contents."""


class CallerLike(Protocol):
    """What the handler needs of the attempt that asks (agent.tools.Caller)."""

    app: str
    env: dict[str, str]


_FLAGS = {"--auto-create": "auto_create", "--allow-negative": "allow_negative", "--leaf-only": "leaf_only"}
_VALUED = {"--app", "--app-id", "--kafka", "--module-id", "--job-id", "--task-id"}
_KEPT = {"--batch-size": "batch_size", "--prefix": "prefix", "--sema-file": "sema_file",
         SEMA_FILE_NAME: "sema_file_name", SEMA_FILE_TEXT: "sema_file_text"}
"""Valued options kept in the flags (only when given). The in-task tool reads a `--sema-file FILE` itself (the
agent cannot open the task's files) and forwards its name and contents as the last two."""


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "y", "true", "1")


def parse(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, Any], str | None]:
    """(positional arguments, flags, --app-id) of a tool's arguments; flags fall back to the environment."""
    positional: list[str] = []
    flags = {"auto_create": _yes(env.get("SEMAPHORE_AUTO_CREATE")),
             "allow_negative": _yes(env.get("SEMAPHORE_ALLOW_NEGATIVE"))}
    app: str | None = None
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        if arg in _FLAGS:
            flags[_FLAGS[arg]] = True
        elif name in _KEPT:
            flags[_KEPT[name]] = value if eq else next(it, "")
        elif name in _VALUED and arg.startswith("--"):
            value = value if eq else next(it, "")
            if name in ("--app", "--app-id"):
                app = value
        elif arg == "--":
            positional.extend(it)
        else:
            positional.append(arg)
    return positional, flags, app


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


Route = Callable[[StateClient, str, list[str], dict[str, Any], dict[str, str]], Outcome]
"""(client, app, positional arguments, flags, environment) -> outcome of one command."""


def _arity(op: str, low: int, high: int | None = None) -> Callable[[Route], Route]:
    """Check the count of positional arguments before the route runs."""
    top = low if high is None else high

    def wrap(route: Route) -> Route:
        def checked(client: StateClient, app: str, pos: list[str], flags: dict[str, Any],
                    env: dict[str, str]) -> Outcome:
            if not low <= len(pos) <= top:
                return Outcome(ERROR, error=f"scalebox {op}: expected {low}{'' if top == low else f'-{top}'} "
                                            f"argument(s), got {len(pos)}")
            return route(client, app, pos, flags, env)
        return checked
    return wrap


def _add(n: int | None) -> Route:
    def route(client: StateClient, app: str, pos: list[str], flags: dict[str, Any], env: dict[str, str]) -> Outcome:
        step = n if n is not None else _int(pos[1])
        if step is None:
            return Outcome(ERROR, error=f"scalebox semaphore increment-n|add-value: N is an integer, not {pos[1]!r}")
        return api.semaphore_add(client, app, pos[0], step, flags["auto_create"], flags["allow_negative"])
    return route


def _create(client: StateClient, app: str, pos: list[str], flags: dict[str, Any], env: dict[str, str]) -> Outcome:
    conflict = env.get("CONFLICT_ACTION") or "error"
    many = _semaphores_to_create(pos, flags)
    if isinstance(many, Outcome):
        return many
    if many is not None:
        batch = _int(flags.get("batch_size", str(api.BATCH_SIZE)))
        if batch is None:
            return Outcome(ERROR, error=f"scalebox semaphore create: --batch-size is an integer, not "
                                        f"{flags['batch_size']!r}")
        return api.semaphore_create_many(client, app, many, conflict, batch)
    return _create_one(client, app, pos, flags, env)


def _semaphores_to_create(pos: list[str], flags: dict[str, Any]) -> dict[str, int] | Outcome | None:
    """The semaphores of a batch create (a forwarded --sema-file, or one JSON argument); None: NAME VALUE."""
    if "sema_file" in flags:
        return Outcome(ERROR, error="scalebox semaphore create: --sema-file reached the agent unread (the "
                                    "in-task tool reads the file)")
    try:
        return api.semaphores_to_create(pos, flags.get("sema_file_text"), flags.get("sema_file_name") or "sema file")
    except ValueError as exc:
        return Outcome(ERROR, error=f"scalebox semaphore create: {exc}")


@_arity("semaphore create", 2)
def _create_one(client: StateClient, app: str, pos: list[str], flags: dict[str, Any],
                env: dict[str, str]) -> Outcome:
    value = _int(pos[1])
    if value is None:
        return Outcome(ERROR, error=f"scalebox semaphore create: VALUE is an integer, not {pos[1]!r}")
    return api.semaphore_create(client, app, pos[0], value, env.get("CONFLICT_ACTION") or "error")


def _semagroup(op: str) -> Route:
    @_arity(f"semagroup {op}", 1)
    def route(client: StateClient, app: str, pos: list[str], flags: dict[str, Any], env: dict[str, str]) -> Outcome:
        return api.semagroup(client, app, op, pos[0], flags["allow_negative"])
    return route


ROUTES: dict[str, Route] = {
    "semaphore create": _create,
    "semaphore get": _arity("semaphore get", 1)(
        lambda c, app, pos, flags, env: api.semaphore_get(c, app, pos[0], flags["auto_create"])),
    "semaphore increment": _arity("semaphore increment", 1)(_add(1)),
    "semaphore decrement": _arity("semaphore decrement", 1)(_add(-1)),
    "semaphore increment-n": _arity("semaphore increment-n", 2)(_add(None)),
    "semaphore add-value": _arity("semaphore add-value", 2)(_add(None)),
    **{f"{kind} list": _arity(f"{kind} list", 0, 1)(
        lambda c, app, pos, flags, env, kind=kind: api.list_items(
            c, kind, app, pos[0] if pos else "", flags.get("prefix", ""), flags.get("leaf_only", False)))
       for kind in (SEMAPHORE, VARIABLE, GLOBAL)},
    **{f"semagroup {op}": _semagroup(op) for op in api.SEMAGROUP_OPS},
    "variable get": _arity("variable get", 1)(lambda c, app, pos, flags, env: api.variable_get(c, app, pos[0])),
    "variable set": _arity("variable set", 2)(
        lambda c, app, pos, flags, env: api.variable_set(c, app, pos[0], pos[1])),
    "global get": _arity("global get", 1)(lambda c, app, pos, flags, env: api.global_get(c, pos[0])),
    "global set": _arity("global set", 2)(lambda c, app, pos, flags, env: api.global_set(c, pos[0], pos[1])),
    **{f"{kind} delete": _arity(f"{kind} delete", 1)(
        lambda c, app, pos, flags, env, kind=kind: api.delete(c, kind, app, pos[0]))
       for kind in (SEMAPHORE, VARIABLE, GLOBAL)},
    "app set-finished": _arity("app set-finished", 0, 1)(
        lambda c, app, pos, flags, env: api.app_set_finished(c, app, pos[0] if pos else "")),
}


def text_of(outcome: Outcome) -> tuple[int, str]:
    """The code and the text a tool prints (stdout for 0, stderr otherwise)."""
    if outcome.code == 0:
        return 0, outcome.output or ""
    parts = [p for p in (outcome.output, outcome.error) if p]
    return outcome.code, "\n".join(parts)


class StateToolHandler:
    """Answers the in-task state requests of one agent (thread-safe: the tool server's workers call it)."""

    def __init__(self, bootstrap: str, topics: StateTopics | None = None, timeout_s: float = 60.0,
                 client_factory: Callable[[], StateClient] | None = None) -> None:
        self._factory = client_factory or (lambda: StateClient(bootstrap, topics, timeout_s=timeout_s))
        self._client: StateClient | None = None
        self._lock = threading.Lock()
        self._closed = False

    def client(self) -> StateClient:
        """The agent's state client, made on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the agent is stopping")
            if self._client is None:
                self._client = self._factory()
            return self._client

    def handle(self, op: str, args: list[str], caller: CallerLike) -> tuple[int, str]:
        """Scalebox's code and text for `scalebox OP ARGS...` from inside a task of `caller.app`."""
        route = ROUTES.get(op)
        if route is None:
            return ERROR, f"scalebox {op}: not a state command inside a task"
        positional, flags, app = parse(args, caller.env)
        try:
            outcome = route(self.client(), app or caller.app, positional, flags, caller.env)
        except (TimeoutError, RuntimeError) as exc:
            return ERROR, f"scalebox {op}: {exc}"
        except Exception as exc:  # KafkaException and friends
            log.warning("in-task %s failed: %s", op, exc)
            return ERROR, f"scalebox {op}: {type(exc).__name__}: {exc}"
        return text_of(outcome)

    def close(self) -> None:
        """Release the client (requests after this are errors)."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()
