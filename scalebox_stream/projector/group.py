"""Several projector processes in one consumer group, started and stopped together.

A projector is bound by its own Python (decoding Avro is half of it), not by PostgreSQL, so one process per
core projects faster. The processes share the partitions of the events topic through the consumer group;
two of them inserting the same row at once is resolved by the SQL (`errors.is_conflict`). Process i serves
its Prometheus metrics on `metrics_port + i`.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
from dataclasses import dataclass, field, fields
from multiprocessing.synchronize import Barrier

from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.projector.service import PROJECTOR_GROUP, Projector
from scalebox_stream.projector.settings import ProjectorSettings
from scalebox_stream.projector.stats import ProjectorStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectorConfig:
    """What every process of the group is started with."""

    bootstrap: str
    dsn: str
    settings: ProjectorSettings = field(default_factory=ProjectorSettings)
    group: str = PROJECTOR_GROUP
    topic: str = EVENTS_TOPIC
    metrics_port: int | None = None


def run_projectors(config: ProjectorConfig, processes: int, until_caught_up: bool = False) -> ProjectorStats:
    """Run `processes` projectors (in this process when 1) until stopped or, with `until_caught_up`, until
    the topic is projected; returns their summed counters. Raises RuntimeError if one of them failed."""
    if processes <= 1:
        projector = _projector(config, 0)
        return projector.run(until_caught_up=until_caught_up)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)  # join the group together: nobody projects alone for a while
    results = context.SimpleQueue()
    children = [context.Process(target=_serve, args=(config, i, until_caught_up, barrier, results),
                                name=f"projector-{i}") for i in range(processes)]
    for child in children:
        child.start()

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: the child finishes its batch and leaves the group

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = {child.sentinel: child for child in children}
        while running:
            for sentinel in multiprocessing.connection.wait(list(running)):
                child = running.pop(sentinel)
                child.join()
                if child.exitcode != 0:  # one failed: stop the others rather than let them wait for it
                    stop(signal.SIGTERM, None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [c.name for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"projector process(es) failed: {', '.join(failed)} (see their log lines)")
    return _summed([results.get() for _ in children])


def _projector(config: ProjectorConfig, index: int) -> Projector:
    port = None if config.metrics_port is None else config.metrics_port + index
    return Projector(config.bootstrap, config.dsn, config.settings, group=config.group, topic=config.topic,
                     metrics_port=port)


def _serve(config: ProjectorConfig, index: int, until_caught_up: bool, barrier: Barrier,
           results: multiprocessing.SimpleQueue) -> None:
    """(Child) One projector of the group."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s projector-{index} %(message)s")
    projector = _projector(config, index)
    projector.start()  # connected and migrated: then all subscribe at once
    barrier.wait(config.settings.group_start_timeout_s)
    results.put(projector.run(until_caught_up=until_caught_up))


def _summed(stats: list[ProjectorStats]) -> ProjectorStats:
    """The counters of all processes together (times: the first start and the last commit)."""
    total = ProjectorStats(**{f.name: sum(getattr(s, f.name) for s in stats) for f in fields(ProjectorStats)
                              if f.name not in ("first_batch_at", "last_batch_at")})
    total.first_batch_at = min((s.first_batch_at for s in stats if s.first_batch_at is not None), default=None)
    total.last_batch_at = max((s.last_batch_at for s in stats if s.last_batch_at is not None), default=None)
    return total
