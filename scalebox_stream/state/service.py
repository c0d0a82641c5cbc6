"""Running an owner: as a process (SIGTERM stops it), or inside a command while no other owner serves."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import admin_config
from scalebox_stream.state.model import StateTopics
from scalebox_stream.state.owner import Owner, OwnerStats

log = logging.getLogger(__name__)


def serve(bootstrap: str, owner_id: str | None = None, topics: StateTopics | None = None,
          static: bool = True) -> OwnerStats:
    """Create the state topics if missing and serve as an owner until SIGTERM or SIGINT (`static`: see
    `Owner.static`)."""
    topics = topics or StateTopics.from_env()
    topics.ensure(bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return Owner(bootstrap, topics, owner_id, stop=stop, static=static).run()


def owners_serving(bootstrap: str, topics: StateTopics, timeout_s: float = 10.0) -> bool:
    """Whether the owners' group has members (a live owner, or a killed static one not yet timed out)."""
    admin = AdminClient(admin_config(bootstrap, log_level=3))  # not its info lines on a command's stderr
    described = admin.describe_consumer_groups([topics.group], request_timeout=timeout_s)[topics.group]
    try:
        return bool(described.result(timeout_s).members)
    except Exception:  # an unknown group is an empty one
        return False


@contextmanager
def owner_unless_serving(bootstrap: str, topics: StateTopics | None = None, ready_s: float = 30.0) -> Iterator[bool]:
    """Run an owner in this process for the block if no owner serves the state (a command after `scalebox run`
    stopped its owner); yields whether it did. It joins the group without a fixed id and leaves it after."""
    topics = topics or StateTopics.from_env()
    if owners_serving(bootstrap, topics):
        yield False
        return
    topics.ensure(bootstrap)
    stop, ready = threading.Event(), threading.Event()
    owner = Owner(bootstrap, topics, f"cli.{threading.get_native_id()}", stop=stop, on_ready=ready.set, static=False)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            owner.run()
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="state-owner", daemon=True)
    thread.start()
    try:
        if not ready.wait(ready_s):
            log.warning("the command's own state owner was not ready in %.0f s", ready_s)
        if failure:
            raise RuntimeError(f"no state owner runs, and this command could not run one: {failure[0]}")
        yield True
    finally:
        stop.set()
        thread.join(30)
