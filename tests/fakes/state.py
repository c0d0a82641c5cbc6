"""An in-memory stand-in for `state.client.StateClient`: the owners' state machine applied in the caller's thread
(unit tests only; the real client and owners are tested on the broker)."""

from __future__ import annotations

import itertools
import threading

from scalebox_stream.state.machine import apply
from scalebox_stream.state.model import Command, Item, Key, Reply


class FakeStateClient:
    """`command`, `call` and `scatter` as the real client has them, over one dict of items."""

    partitions = 3

    def __init__(self) -> None:
        self.items: dict[Key, Item] = {}
        self.commands: list[Command] = []
        self.closed = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def command(self, op: str, kind: str, app: str, name: str, **fields: object) -> Command:
        return Command(f"fake-{next(self._ids)}", op, kind, app, name, **fields)

    def call(self, cmd: Command, partition: int | None = None) -> Reply:
        with self._lock:
            self.commands.append(cmd)
            outcome = apply(self.items, cmd)
            for change in outcome.changes:
                if change.item is None:
                    self.items.pop(change.key, None)
                else:
                    self.items[change.key] = change.item
            return outcome.reply

    def call_many(self, cmds: list[Command]) -> list[Reply]:
        return [self.call(cmd) for cmd in cmds]

    def scatter(self, cmd: Command) -> list[Reply]:
        return [self.call(cmd)]

    def close(self) -> None:
        self.closed = True
