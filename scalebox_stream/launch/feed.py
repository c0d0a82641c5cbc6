"""Sending start tasks without flooding a module: wait while its backlog is over half its `max_backlog`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from scalebox_stream.spec.model import AppSpec


class Sender(Protocol):
    """Publishes (module, body) tasks of an app in one transaction and returns their ids."""

    def send(self, app: str, tasks: Sequence[tuple[str, str]],
             headers: dict[str, str] | None = None, host: str | None = None) -> list[str]: ...


class Backlog(Protocol):
    """How many tasks of a module wait in Kafka."""

    def backlog(self, app: str, module: str) -> int: ...

    def close(self) -> None: ...


def chunks(spec: AppSpec, sends: Sequence[tuple[str, str]]) -> list[tuple[str | None, list[tuple[str, str]]]]:
    """`sends` cut where a bounded module's backlog must be checked first: (module to check or None, chunk).

    A module with `max_backlog: n` is checked before every n/2-th send (counted over all sends)."""
    out: list[tuple[str | None, list[tuple[str, str]]]] = []
    for index, (module, body) in enumerate(sends):
        bound = spec.modules[module].max_backlog
        if bound is not None and index % max(1, bound // 2) == 0:
            out.append((module, []))
        elif not out:
            out.append((None, []))
        out[-1][1].append((module, body))
    return out


def feed(spec: AppSpec, sends: Sequence[tuple[str, str]], sender: Sender, backlog: Callable[[], Backlog],
         headers: dict[str, str] | None = None, on_wait: Callable[[str, int], None] | None = None,
         poll_s: float = 0.2, host: str | None = None) -> list[str]:
    """Publish (module, body) tasks chunk by chunk, each chunk one transaction; before a chunk that starts with
    a bounded module, wait while that module's backlog is over half its bound. `backlog` makes the monitor,
    once, when a bound is first checked. `host`: send to that host's topics (HOST-BOUND tasks with a `to_host`).
    Returns the task ids in the order of `sends`."""
    ids: list[str] = []
    monitor: Backlog | None = None
    try:
        for check, chunk in chunks(spec, sends):
            if check is not None:
                bound = spec.modules[check].max_backlog or 0
                monitor = monitor or backlog()
                while (waiting := monitor.backlog(spec.name, check)) > bound // 2:
                    if on_wait is not None:
                        on_wait(check, waiting)
                    time.sleep(poll_s)
            ids += sender.send(spec.name, chunk, headers, **({"host": host} if host is not None else {}))
    finally:
        if monitor is not None:
            monitor.close()
    return ids
