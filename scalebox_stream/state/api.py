"""The state operations with Scalebox's names, output and return codes, over a `StateClient`.

Each function returns an `Outcome`: the return code (0 ok, 1 error or refusal, 2 not found), what to print on
stdout (Scalebox's output: a value, a JSON map for a pattern, `"name":value` for a group member) and an error
text for stderr. The CLI prints it; the in-task tools will too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import (
    APP,
    APP_RESULT,
    CONFLICT,
    ERROR,
    GLOBAL,
    NOT_FOUND,
    OK,
    SEMAPHORE,
    VARIABLE,
    Reply,
    StateTopics,
    is_pattern,
)

SEMAGROUP_OPS = ("min", "max", "increment", "decrement", "diffmin", "diffmax")
CAS_ATTEMPTS = 50
BATCH_SIZE = 100
"""Scalebox's default `--batch-size`: here, how many creates of a batch are in flight at once."""
_GROUP_EXPR = re.compile(r"^\(([^)]*)\)(.*)$")
_SEMA_LINE = re.compile(r'^\s*"([^"]+)"\s*:\s*(-?\d+)\s*,?\s*$')


@dataclass(frozen=True)
class Outcome:
    """What a command prints and returns."""

    code: int
    output: str | None = None
    error: str | None = None


@contextmanager
def connect(bootstrap: str, topics: StateTopics | None = None, timeout_s: float = 30.0) -> Iterator[StateClient]:
    """A client for the duration of a block."""
    client = StateClient(bootstrap, topics, timeout_s=timeout_s)
    try:
        yield client
    finally:
        client.close()


def run(bootstrap: str, operation: Callable[..., Outcome], *args: Any, timeout_s: float = 30.0,
        serve: bool = False, **kwargs: Any) -> Outcome:
    """Run one operation with a client of its own; a missing owner or broker is an error (code 1). `serve`: if
    no owner serves the state, this process runs one for the operation (see `service.owner_unless_serving`)."""
    from scalebox_stream.state.service import owner_unless_serving

    try:
        with owner_unless_serving(bootstrap) if serve else nullcontext(), \
                connect(bootstrap, timeout_s=timeout_s) as client:
            return operation(client, *args, **kwargs)
    except (TimeoutError, RuntimeError) as exc:
        return Outcome(ERROR, error=str(exc))
    except Exception as exc:  # KafkaException and friends: Scalebox's "db error"
        return Outcome(ERROR, error=f"{type(exc).__name__}: {exc}")


def _json_map(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _single(reply: Reply) -> Outcome:
    if reply.code == OK:
        return Outcome(OK, None if reply.value is None else str(reply.value))
    return Outcome(reply.code, None, reply.error or f"refused ({reply.reason})")


def _merged(replies: list[Reply]) -> Outcome:
    """One JSON map from the partitions' replies; the first error (if any) sets the code."""
    values: dict[str, Any] = {}
    for reply in replies:
        values.update(reply.values or {})
    failed = next((r for r in replies if r.code != OK), None)
    if failed is not None:
        return Outcome(failed.code, _json_map(values), failed.error)
    return Outcome(OK, _json_map(values))


def _scan(client: StateClient, kind: str, app: str, pattern: str) -> dict[str, Any] | Outcome:
    replies = client.scatter(client.command("scan", kind, app, pattern))
    merged = _merged(replies)
    if merged.code != OK:
        return merged
    return json.loads(merged.output or "{}")


# ---- semaphores ----

def semaphore_create(client: StateClient, app: str, name: str, value: int, conflict: str = "error") -> Outcome:
    """`semaphore create NAME VALUE` (CONFLICT_ACTION=IGNORE|OVERWRITE for an existing one); prints nothing."""
    outcome = _single(client.call(client.command("create", SEMAPHORE, app, name, value=value,
                                                 conflict=conflict.lower() or "error")))
    return Outcome(outcome.code, None, outcome.error)


def parse_semaphore_json(text: str) -> dict[str, int]:
    """The semaphores of `semaphore create '{"semaphores":{"s1":n1,...}}'` (a bare `{"s1":n1}` map too).
    Raises ValueError naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(data, dict) and set(data) == {"semaphores"}:
        data = data["semaphores"]
    if not isinstance(data, dict) or not data:
        raise ValueError('expected {"semaphores":{"name":value,...}} with at least one semaphore')
    bad = [name for name, value in data.items() if not isinstance(value, int) or isinstance(value, bool)]
    if bad:
        raise ValueError(f"a semaphore's value is an integer: {', '.join(f'{n!r}' for n in bad)}")
    return dict(data)


def parse_semaphore_lines(text: str, source: str) -> dict[str, int]:
    """The semaphores of a `--sema-file`: one `"name":value` per line, blank lines ignored. Raises ValueError
    naming the file (`source`), the line number and what is wrong; a name given twice is an error too."""
    values: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SEMA_LINE.match(line)
        if match is None:
            raise ValueError(f'{source}:{number}: expected "name":value (an integer), not {line.strip()!r}')
        name, value = match.group(1), int(match.group(2))
        if name in values:
            raise ValueError(f"{source}:{number}: semaphore {name!r} is given twice")
        values[name] = value
    if not values:
        raise ValueError(f"{source}: no semaphores in it")
    return values


def semaphores_to_create(args: list[str], sema_text: str | None, sema_source: str) -> dict[str, int] | None:
    """The semaphores of a batch `semaphore create`: the text of a `--sema-file` (`sema_source` names it in
    messages; no NAME or VALUE then), or one JSON argument. None: not a batch (`NAME VALUE`). Raises ValueError
    naming what is wrong."""
    if sema_text is not None:
        if args:
            raise ValueError("--sema-file takes no NAME or VALUE")
        return parse_semaphore_lines(sema_text, sema_source)
    if len(args) == 1 and args[0].lstrip().startswith("{"):
        return parse_semaphore_json(args[0])
    return None


def semaphore_create_many(client: StateClient, app: str, values: dict[str, int], conflict: str = "error",
                          batch_size: int = BATCH_SIZE) -> Outcome:
    """`semaphore create JSON` / `--sema-file FILE`: creates each semaphore (CONFLICT_ACTION as for one), at most
    `batch_size` in flight at once. Code 0 if all were created (or kept, with IGNORE); otherwise 1, naming those
    that were not, with why. Each create stands on its own: the others are created all the same."""
    if batch_size < 1:
        return Outcome(ERROR, error=f"--batch-size is at least 1, not {batch_size}")
    names = list(values)
    failed: list[str] = []
    for start in range(0, len(names), batch_size):
        chunk = names[start:start + batch_size]
        replies = client.call_many([client.command("create", SEMAPHORE, app, name, value=values[name],
                                                   conflict=conflict.lower() or "error") for name in chunk])
        failed += [f"{name} ({reply.error or reply.reason})" for name, reply in zip(chunk, replies, strict=True)
                   if reply.code != OK]
    if failed:
        return Outcome(ERROR, error=f"{len(failed)} of {len(names)} semaphore(s) not created: {'; '.join(failed)}")
    return Outcome(OK)


def semaphore_get(client: StateClient, app: str, name: str, auto_create: bool = False) -> Outcome:
    """`semaphore get NAME` prints its value; a pattern prints a JSON map of the matching ones."""
    if is_pattern(name):
        return _merged(client.scatter(client.command("scan", SEMAPHORE, app, name)))
    return _single(client.call(client.command("get", SEMAPHORE, app, name, auto_create=auto_create)))


def semaphore_add(client: StateClient, app: str, name: str, n: int, auto_create: bool = False,
                  allow_negative: bool = False) -> Outcome:
    """`increment`, `decrement`, `increment-n NAME N`: prints the new value (a JSON map for a pattern). A value
    would go below zero only with `allow_negative`; otherwise the command is refused (code 1)."""
    if is_pattern(name):
        return _merged(client.scatter(client.command("add_matching", SEMAPHORE, app, name, n=n,
                                                     allow_negative=allow_negative)))
    return _single(client.call(client.command("add", SEMAPHORE, app, name, n=n, auto_create=auto_create,
                                              allow_negative=allow_negative)))


def list_items(client: StateClient, kind: str, app: str, pattern: str = "", prefix: str = "",
               leaf_only: bool = False) -> Outcome:
    """`semaphore|variable|global list`: a JSON map of the items of a kind (of the app; globals have none) whose
    names match PATTERN and begin with `prefix`; `leaf_only`: only the leaves of the names' `:` hierarchy
    (see `leaves`)."""
    if kind == GLOBAL:
        app = ""
    scan = pattern or ("^" + re.escape(prefix) if prefix else "")
    found = _scan(client, kind, app, scan)
    if isinstance(found, Outcome):
        return found
    names = [name for name in found if name.startswith(prefix)]
    if leaf_only:
        names = leaves(names)
    return Outcome(OK, _json_map({name: found[name] for name in names}))


def leaves(names: list[str]) -> list[str]:
    """The names that are leaves of the hierarchy their `:` separators make: a name is not a leaf if another
    name extends it past a `:` (`node:h1` is not, next to `node:h1:slot0`; `node:h10` does not extend
    `node:h1`)."""
    parents = {name[:i] for name in names for i, ch in enumerate(name) if ch == ":"}
    return [name for name in names if name not in parents]


def semagroup(client: StateClient, app: str, op: str, expr: str, allow_negative: bool = False) -> Outcome:
    """`semagroup min|max|increment|decrement EXPR` over the semaphores EXPR matches (a prefix or a pattern):
    prints `"name":value` of the lowest/highest member (ties: the first name), `increment` raises the lowest by
    one and `decrement` lowers the highest by one. `diffmax|diffmin (PREFIX)SUFFIX`: the group PREFIX.* and its
    member PREFIX+SUFFIX; prints group max - member, or member - group min."""
    if op not in SEMAGROUP_OPS:
        return Outcome(ERROR, error=f"unknown semagroup operation {op!r} (one of {', '.join(SEMAGROUP_OPS)})")
    if op in ("diffmin", "diffmax"):
        return _diff(client, app, op, expr)
    for _ in range(CAS_ATTEMPTS):
        group = _scan(client, SEMAPHORE, app, expr)
        if isinstance(group, Outcome):
            return group
        if not group:
            return Outcome(NOT_FOUND, error=f"no semaphore matches {expr!r}")
        lowest = op in ("min", "increment")
        name = min(group, key=lambda k: (group[k], k)) if lowest else min(group, key=lambda k: (-group[k], k))
        if op in ("min", "max"):
            return Outcome(OK, f'"{name}":{group[name]}')
        reply = client.call(client.command("add", SEMAPHORE, app, name, n=1 if op == "increment" else -1,
                                           expect=group[name], allow_negative=allow_negative))
        if reply.code == OK:
            return Outcome(OK, f'"{name}":{reply.value}')
        if reply.reason != CONFLICT:
            return _single(reply)
    return Outcome(ERROR, error=f"semagroup {op} {expr!r}: the group kept changing ({CAS_ATTEMPTS} attempts)")


def _diff(client: StateClient, app: str, op: str, expr: str) -> Outcome:
    match = _GROUP_EXPR.match(expr)
    if match is None:
        return Outcome(ERROR, error=f"not a semagroup expression {expr!r}: (GROUP-PREFIX)SUFFIX")
    prefix, suffix = match.groups()
    group = _scan(client, SEMAPHORE, app, prefix)
    if isinstance(group, Outcome):
        return group
    member = prefix + suffix
    if member not in group:
        return Outcome(NOT_FOUND, error=f"semaphore {member!r} not found")
    value = max(group.values()) - group[member] if op == "diffmax" else group[member] - min(group.values())
    return Outcome(OK, str(value))


# ---- variables, globals, app results ----

def _get_text(client: StateClient, kind: str, app: str, name: str) -> Outcome:
    if is_pattern(name):
        return _merged(client.scatter(client.command("scan", kind, app, name)))
    return _single(client.call(client.command("get", kind, app, name)))


def _set_text(client: StateClient, kind: str, app: str, name: str, value: str) -> Outcome:
    outcome = _single(client.call(client.command("set", kind, app, name, value=value)))
    return Outcome(outcome.code, None, outcome.error)


def variable_get(client: StateClient, app: str, name: str) -> Outcome:
    """`variable get NAME` prints its value; a pattern prints a JSON map."""
    return _get_text(client, VARIABLE, app, name)


def variable_set(client: StateClient, app: str, name: str, value: str) -> Outcome:
    """`variable set NAME VALUE` (creates or replaces)."""
    return _set_text(client, VARIABLE, app, name, value)


def global_get(client: StateClient, name: str) -> Outcome:
    """`global get NAME`: a value shared by every app."""
    return _get_text(client, GLOBAL, "", name)


def global_set(client: StateClient, name: str, value: str) -> Outcome:
    """`global set NAME VALUE`."""
    return _set_text(client, GLOBAL, "", name, value)


def delete(client: StateClient, kind: str, app: str, name: str) -> Outcome:
    """`semaphore|variable|global delete NAME`: prints nothing; code 2 if there is none. A name is taken as it is
    (no pattern)."""
    outcome = _single(client.call(client.command("delete", kind, "" if kind == GLOBAL else app, name)))
    return Outcome(outcome.code, None, outcome.error)


def app_set_finished(client: StateClient, app: str, text: str) -> Outcome:
    """`app set-finished TEXT`: the app's result (the projection shows it and marks the app finished)."""
    return _set_text(client, APP, app, APP_RESULT, text)


def app_result(client: StateClient, app: str) -> Outcome:
    """The result an app was finished with (code 2 if none)."""
    return _single(client.call(client.command("get", APP, app, APP_RESULT)))

