"""Sending start tasks without flooding a module: wait while its backlog is over `max_backlog`."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Producer

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.backlog import BacklogMonitor
from scalebox_stream.kafka.task_publisher import flush_or_fail, publish_task
from scalebox_stream.spec.model import AppSpec


def feed(spec: AppSpec, sends: list[tuple[str, str]], producer: Producer, bootstrap: str,
         headers: dict[str, str] | None = None, on_wait: Callable[[str, int], None] | None = None) -> list[str]:
    """Publish (module, body) tasks; before each chunk, wait while the target's backlog is over its bound."""
    codec, ids = EventCodec(), []
    monitor: BacklogMonitor | None = None
    for index, (module, body) in enumerate(sends):
        bound = spec.modules[module].max_backlog
        if bound is not None and index % max(1, bound // 2) == 0:
            flush_or_fail(producer)
            monitor = monitor or BacklogMonitor(bootstrap)
            while (backlog := monitor.backlog(spec.name, module)) > bound // 2:
                if on_wait is not None:
                    on_wait(module, backlog)
                time.sleep(0.2)
        ids.append(publish_task(producer, codec, spec.name, module, body, headers))
    flush_or_fail(producer)
    if monitor is not None:
        monitor.close()
    return ids
