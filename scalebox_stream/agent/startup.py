"""Start-up steps that can wait on the broker say so when they take long (see `policy.slow_step`): an agent
that waits for a broker just restarted is not silent for minutes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from scalebox_stream.policy.slow_step import FIRST_S, SlowStep

log = logging.getLogger(__name__)


@contextmanager
def slow_step(what: str, hint: str = "", first_s: float = FIRST_S,
              clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Run the body; while it takes longer than `first_s`, a thread of its own logs what it waits for."""
    watch = SlowStep(what, clock(), hint, first_s)
    done, lock = threading.Event(), threading.Lock()

    def remind() -> None:
        while not done.wait(max(0.0, watch.next_at() - clock())):
            with lock:
                line = None if done.is_set() else watch.due(clock())
            if line:
                log.warning("%s", line)

    threading.Thread(target=remind, name="slow-step", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        with lock:
            line = watch.done(clock())
        if line:
            log.info("%s", line)
