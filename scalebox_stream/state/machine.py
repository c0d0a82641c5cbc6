"""The state machine an owner runs: one command in, one reply and the changed items out. Pure: no Kafka.

`apply` reads the items through a mapping and never changes them in place: a changed item is a new object in
`Outcome.changes`, which the owner commits (changelog, reply, event) or drops with its transaction. A deleted
item is a change to None (a tombstone on the changelog); a mapping may hold None for a key deleted but not yet
committed, which counts as missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scalebox_stream.state.model import (
    APP,
    BELOW_ZERO,
    CONFLICT,
    DELETED,
    ERROR,
    EXISTS,
    INVALID,
    NOT_FOUND,
    OK,
    SEMAPHORE,
    Command,
    Item,
    Key,
    Reply,
    compile_pattern,
)


@dataclass
class Change:
    """An item's new state (None: deleted), with the value it had (None: created) and the operation that changed
    it."""

    key: Key
    op: str
    old: int | str | None
    item: Item | None
    request_id: str
    version: int = 0
    """The change's version: the item's new one (a delete's: one past the deleted item's)."""
    event: bool = True
    """Whether the projection hears of it (a StateChanged event); not for the partition's delete memory."""


@dataclass
class Outcome:
    """What one command did: its reply and the items it changed."""

    reply: Reply
    changes: list[Change] = field(default_factory=list)


def apply(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    """Apply one command to the items (the owner's view of its partition)."""
    handler = _OPS.get(cmd.op)
    if handler is None:
        return _refuse(cmd, INVALID, f"unknown operation {cmd.op!r}")
    if cmd.op in _SEMAPHORE_ONLY and cmd.kind != SEMAPHORE:
        return _refuse(cmd, INVALID, f"{cmd.op} applies to semaphores, not {cmd.kind}s")
    return handler(items, cmd)


def _refuse(cmd: Command, reason: str, error: str, value: Any = None) -> Outcome:
    return Outcome(Reply(cmd.id, ERROR, value=value, reason=reason, error=error))


def _repeated(item: Item | None, cmd: Command) -> Outcome | None:
    """The first answer to a request seen before (a client's retry), if this item remembers it."""
    if item is None or cmd.id not in item.recent:
        return None
    code, value = item.recent[cmd.id]
    return Outcome(Reply(cmd.id, code, value=value))


def _changed(key: Key, op: str, old: Item | None, value: int | str, cmd: Command) -> Change:
    """The new state of an item, remembering the request's answer."""
    item = old.copy() if old is not None else Item(value, version=0)
    item.value, item.version = value, item.version + 1
    item.remember(cmd.id, OK, value)
    return Change(key, op, None if old is None else old.value, item, cmd.id, item.version)


def _create(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    if not isinstance(cmd.value, int) or isinstance(cmd.value, bool):
        return _refuse(cmd, INVALID, f"a semaphore's value is an integer, not {cmd.value!r}")
    item = items.get(cmd.key)
    if (seen := _repeated(item, cmd)) is not None:
        return seen
    if item is not None and cmd.conflict != "overwrite":
        if cmd.conflict == "ignore":
            return Outcome(Reply(cmd.id, OK, value=item.value))
        return _refuse(cmd, EXISTS, f"semaphore {cmd.name!r} exists (value {item.value})", item.value)
    change = _changed(cmd.key, "create", item, cmd.value, cmd)
    return Outcome(Reply(cmd.id, OK, value=cmd.value), [change])


def _get(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    item = items.get(cmd.key)
    if item is not None:
        return Outcome(Reply(cmd.id, OK, value=item.value, version=item.version))
    if cmd.auto_create and cmd.kind == SEMAPHORE:
        return Outcome(Reply(cmd.id, OK, value=0), [_changed(cmd.key, "create", None, 0, cmd)])
    return Outcome(Reply(cmd.id, NOT_FOUND, error=f"{cmd.kind} {cmd.name!r} not found"))


def _add(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    item = items.get(cmd.key)
    if (seen := _repeated(item, cmd)) is not None:
        return seen
    if item is None and not cmd.auto_create:
        return Outcome(Reply(cmd.id, NOT_FOUND, error=f"semaphore {cmd.name!r} not found"))
    current = 0 if item is None else item.value
    if cmd.expect is not None and current != cmd.expect:
        return _refuse(cmd, CONFLICT, f"semaphore {cmd.name!r} is {current}, not {cmd.expect}", current)
    new = current + cmd.n
    if cmd.n < 0 and new < 0 and not cmd.allow_negative:
        return _refuse(cmd, BELOW_ZERO, f"semaphore {cmd.name!r} is {current}: decrementing by {-cmd.n} would go "
                                        "below zero", current)
    return Outcome(Reply(cmd.id, OK, value=new), [_changed(cmd.key, "add", item, new, cmd)])


def _set(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    if cmd.kind == SEMAPHORE:
        return _refuse(cmd, INVALID, "a semaphore is changed with create or add, not set")
    item = items.get(cmd.key)
    if (seen := _repeated(item, cmd)) is not None:
        return seen
    value = "" if cmd.value is None else str(cmd.value)
    return Outcome(Reply(cmd.id, OK, value=value), [_changed(cmd.key, "set", item, value, cmd)])


def _delete(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    """Delete a semaphore, variable or global: a tombstone for the item, and the request id remembered in the
    partition's delete memory (the item cannot remember it), so a retry gets the first answer."""
    if cmd.kind == APP:
        return _refuse(cmd, INVALID, "an app's result is not deleted")
    memory = items.get(DELETED)
    if memory is not None and cmd.id in memory.recent:
        code, value = memory.recent[cmd.id]
        return Outcome(Reply(cmd.id, code, value=value))
    item = items.get(cmd.key)
    if item is None:
        return Outcome(Reply(cmd.id, NOT_FOUND, error=f"{cmd.kind} {cmd.name!r} not found"))
    remembered = memory.copy() if memory is not None else Item(0, version=0)
    remembered.value, remembered.version = int(remembered.value) + 1, remembered.version + 1
    remembered.remember(cmd.id, OK, None)
    return Outcome(Reply(cmd.id, OK), [
        Change(cmd.key, "delete", item.value, None, cmd.id, item.version + 1),
        Change(DELETED, "remember", None, remembered, cmd.id, remembered.version, event=False)])


def _matching(items: Mapping[Key, Item], cmd: Command) -> list[tuple[Key, Item]] | str:
    """The items of the command's kind and app whose names match its pattern, by name; an error text for a bad
    pattern."""
    try:
        pattern = compile_pattern(cmd.name)
    except re.error as exc:
        return f"bad pattern {cmd.name!r}: {exc}"
    return sorted(((k, v) for k, v in items.items()
                   if v is not None and k[0] == cmd.kind and k[1] == cmd.app and pattern.search(k[2])),
                  key=lambda kv: kv[0][2])


def _scan(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    found = _matching(items, cmd)
    if isinstance(found, str):
        return _refuse(cmd, INVALID, found)
    return Outcome(Reply(cmd.id, OK, values={k[2]: v.value for k, v in found}))


def _add_matching(items: Mapping[Key, Item], cmd: Command) -> Outcome:
    """Add n to every matching semaphore of this partition; one that would go below zero is left as it is (the
    reply is then an error naming it, with the others' new values)."""
    found = _matching(items, cmd)
    if isinstance(found, str):
        return _refuse(cmd, INVALID, found)
    values: dict[str, Any] = {}
    changes, refused = [], []
    for key, item in found:
        if cmd.id in item.recent:
            values[key[2]] = item.recent[cmd.id][1]
            continue
        new = item.value + cmd.n
        if cmd.n < 0 and new < 0 and not cmd.allow_negative:
            refused.append(key[2])
            continue
        values[key[2]] = new
        changes.append(_changed(key, "add", item, new, cmd))
    if refused:
        return Outcome(Reply(cmd.id, ERROR, values=values, reason=BELOW_ZERO,
                             error=f"would go below zero: {', '.join(refused)}"), changes)
    return Outcome(Reply(cmd.id, OK, values=values), changes)


_OPS = {"create": _create, "get": _get, "add": _add, "set": _set, "delete": _delete, "scan": _scan,
        "add_matching": _add_matching}
_SEMAPHORE_ONLY = frozenset({"create", "add", "add_matching"})
