"""Handing the memory the C allocator holds free back to the system.

The projector's working set is small and steady (a batch, its fold, the clients' buffers), but librdkafka
prefetches records into memory of the C allocator, in bursts as large as its queue allows, and frees them once
they are consumed. glibc keeps what was freed in its arenas for reuse and returns little of it to the system by
itself, so the process's resident size settles at the highest burst it ever had rather than at what it uses.
`malloc_trim(0)` returns the free pages of every arena; it takes a few milliseconds, so it runs after a batch
at most once per interval (`trim_due`, a pure policy), and where there is no glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def trim_due(now: float, last: float | None, interval_s: float) -> bool:
    """True if the free memory should be returned now: `interval_s` has passed since the last time (`last`,
    None if never); never with an interval of 0 or less."""
    return interval_s > 0 and (last is None or now - last >= interval_s)


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
    """Calls `release` (by default `return_free_memory`) after a batch, at most once every `interval_s`."""

    def __init__(self, interval_s: float, release: Callable[[], object] = return_free_memory,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.release, self.clock = interval_s, release, clock
        self.last: float | None = None
        self.releases = 0

    def after_batch(self) -> None:
        """A batch was handled: release the free memory if the interval has passed."""
        now = self.clock()
        if trim_due(now, self.last, self.interval_s):
            self.last = now
            self.releases += 1
            self.release()
