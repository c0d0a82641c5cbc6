"""Running an owner: as a process (SIGTERM stops it), or inside a command while no other owner serves."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import admin_config
from scalebox_stream.state.model import StateTopics
from scalebox_stream.state.owner import Owner, OwnerStats

log = logging.getLogger(__name__)


def serve(bootstrap: str, owner_id: str | None = None, topics: StateTopics | None = None,
          static: bool = True, unreachable_s: float | None = None, needed: Callable[[], bool] | None = None,
          check_s: float = 5.0) -> OwnerStats:
    """Create the state topics if missing and serve as an owner until SIGTERM or SIGINT (`static`: see
    `Owner.static`), or until the `ClusterWatch` (`unreachable_s`, `needed`, every `check_s`) ends it."""
    topics = topics or StateTopics.from_env()
    topics.ensure(bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watch = ClusterWatch(bootstrap, stop, unreachable_s, needed, check_s)
    watch.start()
    try:
        return Owner(bootstrap, topics, owner_id, stop=stop, static=static).run()
    finally:
        if watch.reason:
            log.warning("state owner stopping: %s", watch.reason)
        stop.set()


class ClusterWatch(threading.Thread):
    """Ends an owner (sets `stop`) whose cluster is gone: a cluster of another id answers at its address (a new
    broker on the same port: the owner's partitions and offsets mean nothing there), no broker answered for
    `unreachable_s` (None: wait for ever), or `needed()` says it is no longer (the apps it serves ended).
    Checks every `every_s`; `reason` says why it ended the owner."""

    def __init__(self, bootstrap: str, stop: threading.Event, unreachable_s: float | None = None,
                 needed: Callable[[], bool] | None = None, every_s: float = 5.0) -> None:
        super().__init__(name="cluster-watch", daemon=True)
        self.bootstrap, self.stop, self.unreachable_s = bootstrap, stop, unreachable_s
        self.needed, self.every_s = needed, every_s
        self.cluster_id: str | None = None
        self.reason: str | None = None

    def check(self, admin: AdminClient, last_answer: float) -> tuple[str | None, float]:
        """(why the owner should stop or None, when the cluster last answered)."""
        try:
            cluster_id = admin.list_topics(timeout=min(self.every_s, 5.0)).cluster_id
        except KafkaException:
            cluster_id = None
        now = time.monotonic()
        if cluster_id:
            if self.cluster_id is None:
                self.cluster_id = cluster_id
            elif cluster_id != self.cluster_id:
                return f"the cluster at {self.bootstrap} is another one now ({cluster_id}, was {self.cluster_id})", now
            last_answer = now
        elif self.unreachable_s is not None and now - last_answer > self.unreachable_s:
            return f"no broker at {self.bootstrap} answered for {self.unreachable_s:.0f} s", last_answer
        if self.needed is not None and not self.needed():
            return "the apps it served have ended", last_answer
        return None, last_answer

    def run(self) -> None:
        admin = AdminClient(admin_config(self.bootstrap, log_level=0))
        last_answer = time.monotonic()
        while True:
            reason, last_answer = self.check(admin, last_answer)
            if reason is not None:
                self.reason = reason
                log.warning("%s: stopping the state owner", reason)
                self.stop.set()
                return
            if self.stop.wait(self.every_s):
                return


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
