"""Running an owner as a process: topics first, SIGTERM stops it."""

from __future__ import annotations

import signal
import threading

from scalebox_stream.state.model import StateTopics
from scalebox_stream.state.owner import Owner, OwnerStats


def serve(bootstrap: str, owner_id: str | None = None, topics: StateTopics | None = None) -> OwnerStats:
    """Create the state topics if missing and serve as an owner until SIGTERM or SIGINT."""
    topics = topics or StateTopics.from_env()
    topics.ensure(bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return Owner(bootstrap, topics, owner_id, stop=stop).run()
