"""Reading the user's files for the spec layer (app files, env files, start task files) with a size cap.

A file is read up to its cap plus one byte, so a huge file, `/dev/zero` or an endless pipe costs at most
the cap. Start task files are named inside an app file, so they must also be regular files (a FIFO would
block) inside the app directory (see `inside`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileProblem(ValueError):
    """A file that cannot be used: the message says why (for a SpecIssue)."""


def read_capped(path: Path, cap: int, *, what: str, limit_name: str, regular_only: bool = False) -> str:
    """The UTF-8 text of `path`, at most `cap` bytes; FileProblem (naming the cap, `limit_name`) otherwise.

    With `regular_only` the file is opened without blocking and must be a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_NONBLOCK if regular_only else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileProblem(f"{what} not found") from None
    except IsADirectoryError:
        raise FileProblem(f"{what} is a directory") from None
    except OSError as exc:
        raise FileProblem(f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem(f"{what} is a directory")
        if regular_only and not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"{what} is not a regular file")
        if stat.S_ISREG(info.st_mode) and info.st_size > cap:
            raise FileProblem(f"{what} is {info.st_size} bytes, over the limit of {cap} bytes ({limit_name})")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            try:
                chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            except BlockingIOError:
                raise FileProblem(f"cannot read {what}: it would block") from None
            except OSError as exc:
                raise FileProblem(f"cannot read {what}: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise FileProblem(f"{what} is over the limit of {cap} bytes ({limit_name})")
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def inside(path: Path, directory: Path) -> bool:
    """Whether `path`, with every link followed, is `directory` or under it."""
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):
        return False
