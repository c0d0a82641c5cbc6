"""A program's stdout and stderr: read from pipes while it runs, kept as head and tail within a limit."""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Callable
from types import TracebackType

DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
MAX_KEPT_BYTES = 4 << 20
"""The most a capture keeps of one stream, whatever it is asked for (a module's output_text_size may say a
GiB): memory per slot stays bounded. At least twice the agent's largest text, so either end it keeps is whole."""
READ_CHUNK = 1 << 16
EXIT_CHECK_MS = 50
"""Without a pidfd, how often the reader checks whether the program exited while something else (a process
it left behind) still holds its output open."""


def _head_tail(head: bytes, tail: bytes, omitted: int) -> bytes:
    if omitted <= 0:
        return head + tail
    return head + f"\n...[{omitted} bytes omitted]...\n".encode() + tail


class OutputCapture:
    """Keeps the head and the tail of a byte stream fed in chunks, at most `limit` bytes in all (and at most
    MAX_KEPT_BYTES)."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        limit = min(limit, MAX_KEPT_BYTES)
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def total(self) -> int:
        """Bytes fed so far."""
        return self._total

    def value(self) -> bytes:
        omitted = self._total - len(self._head) - len(self._tail)
        return _head_tail(bytes(self._head), bytes(self._tail), omitted)


class ProgramOutput:
    """Two pipes that take a program's stdout and stderr, read into captures while it runs.

    Memory stays within the captures' limits whatever the program writes, and nothing is created on disk per
    task (a temporary file per stream would cost the file system an inode allocation and release per task).
    Use as a context manager: it closes every end it still holds.
    """

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.stdout, self.stderr = OutputCapture(limit), OutputCapture(limit)
        self._fds: list[int] = []
        try:
            out_r, self.stdout_w = self._pipe()
            err_r, self.stderr_w = self._pipe()
        except OSError:  # out of descriptors: give back what was opened
            self.__exit__()
            raise
        self._readers = {out_r: self.stdout, err_r: self.stderr}

    def _pipe(self) -> tuple[int, int]:
        pair = os.pipe2(os.O_CLOEXEC)  # the program gets its copies from the spawn; no other child keeps them
        self._fds.extend(pair)
        return pair

    def __enter__(self) -> ProgramOutput:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def spawned(self) -> None:
        """The program holds its copies of the write ends now: close ours, so that its exit ends the streams."""
        for fd in (self.stdout_w, self.stderr_w):
            if fd in self._fds:
                self._fds.remove(fd)
                os.close(fd)

    def read_until_exit(self, pid: int, deadline: float | None = None,
                        on_deadline: Callable[[], float | None] | None = None) -> None:
        """Read both streams until process `pid` (a child, left unreaped) has exited, then what is left in them.

        A process the program left behind may hold the streams open after it exits: the exit is watched
        through a pidfd (or checked every EXIT_CHECK_MS without one), not inferred from the streams' end.
        `deadline` (monotonic seconds): when it passes, `on_deadline()` is called, and returns the next deadline
        (None: no more); the program's time limit is kept here, with no timer thread per attempt."""
        readers = dict(self._readers)
        poller = select.poll()
        for fd in readers:
            poller.register(fd, select.POLLIN)
        pidfd = _open_pidfd(pid)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        try:
            while True:
                events = poller.poll(_poll_ms(pidfd is None, deadline))
                if deadline is not None and time.monotonic() >= deadline:
                    deadline = on_deadline() if on_deadline is not None else None
                exited = False
                for fd, _ in events:
                    if fd == pidfd:
                        exited = True
                    elif not self._read(fd, readers[fd]):
                        poller.unregister(fd)
                        del readers[fd]
                if exited:
                    break
                if not readers and pidfd is None and deadline is None:  # only the exit is left to wait for
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                    break
                if pidfd is None and not events and os.waitid(os.P_PID, pid,
                                                               os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    break
        finally:
            if pidfd is not None:
                os.close(pidfd)
        for fd, capture in readers.items():
            os.set_blocking(fd, False)
            try:
                while self._read(fd, capture):
                    pass
            except BlockingIOError:  # nothing more now; whoever still holds the stream is not waited for
                pass

    @staticmethod
    def _read(fd: int, capture: OutputCapture) -> bool:
        """Read one chunk into `capture`; False at the end of the stream."""
        chunk = os.read(fd, READ_CHUNK)
        if chunk:
            capture.feed(chunk)
        return bool(chunk)


def _poll_ms(check_exit: bool, deadline: float | None) -> int | None:
    """How long one poll of the streams may wait: until the deadline (rounded up: a poll that ends just before it
    would spin), at most EXIT_CHECK_MS when the exit must be checked for (no pidfd); None: until something happens."""
    wait = EXIT_CHECK_MS if check_exit else None
    if deadline is None:
        return wait
    left = max(0, math.ceil((deadline - time.monotonic()) * 1000))
    return left if wait is None else min(wait, left)


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+); None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
