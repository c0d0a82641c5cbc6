"""Handing the memory the C allocator holds free back to the system.

The projector's working set is small and steady (a batch, its fold, the clients' buffers), but librdkafka
prefetches records into memory of the C allocator, in bursts as large as its queue allows, and frees them once
they are consumed. glibc keeps what was freed in its arenas for reuse and returns little of it to the system by
itself, so the process's resident size settles at the highest burst it ever had rather than at what it uses.
`malloc_trim(0)` returns the free pages of every arena; it takes a few milliseconds, so it runs at most once
per interval while batches keep coming and soon after they stop (`trim_due`, a pure policy); where there is no
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


IDLE_SHARE = 0.2
"""Once idle, the free memory goes back after this share of the interval: a burst's memory soon after it ends."""


def trim_due(now: float, last: float | None, interval_s: float, busy: bool, idle: bool = False) -> bool:
    """True if the free memory should be returned now: only after work since the last time (`busy`; `last`
    None if never), while busy once per `interval_s`, once idle after `IDLE_SHARE` of it; never with an
    interval of 0 or less."""
    if interval_s <= 0 or not busy:
        return False
    return last is None or now - last >= (interval_s * IDLE_SHARE if idle else interval_s)


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None (another C library, another system)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def return_free_memory() -> bool:
    """Return the C allocator's free pages to the system; False if this system's allocator cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class FreeMemoryReturner:
    """Calls `release` (by default `return_free_memory`) as `trim_due` says, told of batches and idle polls."""

    def __init__(self, interval_s: float, release: Callable[[], object] = return_free_memory,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.release, self.clock = interval_s, release, clock
        self.last: float | None = None
        self.busy = False
        """A batch was handled since the last release."""
        self.releases = 0

    def after_batch(self) -> None:
        """A batch was handled."""
        self.busy = True
        self._maybe_release(idle=False)

    def idle(self) -> None:
        """A poll found nothing to project."""
        self._maybe_release(idle=True)

    def _maybe_release(self, idle: bool) -> None:
        now = self.clock()
        if trim_due(now, self.last, self.interval_s, self.busy, idle):
            self.last, self.busy = now, False
            self.releases += 1
            self.release()
