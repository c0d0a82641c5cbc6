"""Reading what a user program left in its work directory, safely.

The agent runs on the host, often as root; the program may have run in a container as root too, and may
leave anything behind: a symbolic link to a host file, a FIFO, a device node, a huge file. So a work-dir
file is read only when it is a regular file of the work directory itself (no link is followed anywhere on
its path), without blocking, and at most up to a cap; anything else is a problem to report, never an
exception and never a read of a host file.

File lists (input-files.txt, ...) name paths as the program saw them; `ProgramView` says which host files
those are. Only regular files under the work directory or a volume the module mounts are counted; any
other path is reported, never stat'ed. A plain process runs as the agent's own user on this host, so the
paths it names are stat'ed as they are (it could stat them itself).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scalebox_stream.executors.docker_common import CONTAINER_WORK_DIR

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_CHUNK = 1 << 18
_NAME_SHOWN = 200
"""Characters of a user-given path quoted in a problem."""

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def shown(name: str) -> str:
    """A user-given name as quoted in a problem: printable and short."""
    text = name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..."
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def kind(mode: int) -> str:
    """What a file of `mode` is, in words."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


@dataclass(frozen=True)
class WorkFile:
    """One work-dir file as read: its bytes (None when absent, a directory, or refused)."""

    data: bytes | None = None
    problem: str | None = None
    """Why it was not read (a link, a FIFO, a device, unreadable)."""
    size: int = 0
    """Its size on disk."""

    @property
    def truncated(self) -> bool:
        """Whether only part of it was read."""
        return self.data is not None and len(self.data) < self.size


def open_dir(path: Path) -> int | None:
    """A descriptor of directory `path` to read its files by (close it with os.close); None if it is gone."""
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError:
        return None


def read_work_file(dir_fd: int, name: str, limit: int, keep: str = "head", whole: bool = False) -> WorkFile:
    """Read file `name` (no slash) of the directory `dir_fd`: at most `limit` bytes, the first ones
    (`keep="head"`) or the last ones (`"tail"`); with `whole`, nothing of a file larger than `limit` (its
    data is None, its size says why). Never follows a link, never blocks, never raises.

    A missing file or a directory reads as absent (data None, no problem); a link, FIFO, socket or device
    is refused with a problem, and is never opened (opening a device can act on it)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return WorkFile()
    except OSError as exc:
        return WorkFile(problem=f"{shown(name)} cannot be read: {exc.strerror}")
    if stat.S_ISDIR(info.st_mode):
        return WorkFile()
    if not stat.S_ISREG(info.st_mode):
        return WorkFile(problem=f"{shown(name)} is {kind(info.st_mode)}: not read")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return WorkFile()
    except OSError as exc:  # replaced by a link since (ELOOP) or unreadable
        return WorkFile(problem=f"{shown(name)} cannot be read: {exc.strerror}")
    try:
        info = os.fstat(fd)  # what was opened, not what was looked at: it may have changed in between
        if not stat.S_ISREG(info.st_mode):
            return WorkFile(problem=f"{shown(name)} is {kind(info.st_mode)}: not read")
        size = info.st_size
        if whole and size > limit:
            return WorkFile(size=size)
        start = max(0, size - limit) if keep == "tail" else 0
        chunks: list[bytes] = []
        left = min(limit, size - start)  # the program has ended: its file does not grow (one read, no EOF read)
        while left > 0 and (chunk := os.pread(fd, min(left, _READ_CHUNK), start)):
            chunks.append(chunk)
            start += len(chunk)
            left -= len(chunk)
        return WorkFile(b"".join(chunks), size=size)
    except OSError as exc:
        return WorkFile(problem=f"{shown(name)} cannot be read: {exc.strerror}")
    finally:
        os.close(fd)


def read_one(work_dir: Path, name: str, limit: int, keep: str = "head", whole: bool = False) -> WorkFile:
    """`read_work_file` for a single file of `work_dir` (opens and closes the directory around it)."""
    dir_fd = open_dir(work_dir)
    if dir_fd is None:
        return WorkFile()
    try:
        return read_work_file(dir_fd, name, limit, keep, whole)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class ProgramView:
    """How the paths a program names map onto this host's files.

    `mounts`: (path the program sees, host directory) pairs, absolute; relative names are taken from the
    work directory. `host`: the program ran on this host as the agent's user, so its paths are this host's
    and are stat'ed as they are.
    """

    work_dir: Path
    mounts: tuple[tuple[str, Path], ...] = ()
    host: bool = False

    @classmethod
    def of_work_dir(cls, work_dir: Path) -> ProgramView:
        """Only the work directory, under its own host path (what is safe without knowing the executor)."""
        return cls(work_dir, ((str(work_dir), work_dir),))


def program_view(executor: str, work_dir: Path, volumes: Iterable[str] = ()) -> ProgramView:
    """The view of a program run by `executor` ("process" or a container engine) with these volumes
    (`src:dst[:mode]`); the work dir is mounted at /work in a container."""
    if executor == "process":
        return ProgramView(work_dir, host=True)
    mounts = [(CONTAINER_WORK_DIR, work_dir)]
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) in (2, 3) and parts[0].startswith("/") and parts[1].startswith("/"):
            mounts.append((posixpath.normpath(parts[1]), Path(parts[0])))
    return ProgramView(work_dir, tuple(mounts))


def _beneath(view: ProgramView, name: str) -> tuple[Path, list[str]] | None:
    """The host directory and the path components under it that `name` means, None if outside."""
    if name.startswith("/"):
        path = "/" + posixpath.normpath(name).lstrip("/")
        best: tuple[str, Path] | None = None
        for seen, host in view.mounts:
            if (path == seen or path.startswith(seen.rstrip("/") + "/")) and (best is None or len(seen) > len(best[0])):
                best = (seen, host)
        if best is None:
            return None
        rest = path[len(best[0]):]
        return best[1], [p for p in rest.split("/") if p]
    rest = posixpath.normpath(name)
    if rest == ".." or rest.startswith("../"):
        return None
    return view.work_dir, [p for p in rest.split("/") if p not in ("", ".")]


def file_size(view: ProgramView, name: str) -> tuple[int | None, str | None]:
    """The size of the regular file a program named, or (None, the problem)."""
    if view.host:
        try:
            info = os.stat(os.path.join(view.work_dir, name))
        except (OSError, ValueError) as exc:
            return None, f"cannot stat {shown(name)}: {getattr(exc, 'strerror', None) or exc}"
        if not stat.S_ISREG(info.st_mode):
            return None, f"{shown(name)} is {kind(info.st_mode)}: not counted"
        return info.st_size, None
    where = _beneath(view, name)
    if where is None:
        return None, f"{shown(name)} is outside the work directory and the module's volumes: not counted"
    root, parts = where
    try:
        # a mount point or the work dir itself is the agent's own, trusted path; below it no link is followed
        info = _stat_beneath(root, parts) if parts else os.stat(root)
    except FileNotFoundError as exc:
        return None, f"cannot stat {shown(name)}: {exc.strerror}"
    except (OSError, ValueError) as exc:
        return None, f"{shown(name)} is not counted: {getattr(exc, 'strerror', None) or exc} (links are not followed)"
    if not stat.S_ISREG(info.st_mode):
        return None, f"{shown(name)} is {kind(info.st_mode)}: not counted"
    return info.st_size, None


@contextlib.contextmanager
def _parent_dir(root: Path, parts: list[str]) -> Iterator[int]:
    """A descriptor of root/parts[:-1], opening each directory on the way without following a link."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _stat_beneath(root: Path, parts: list[str]) -> os.stat_result:
    """lstat of root/parts..., opening each directory on the way without following a link."""
    with _parent_dir(root, parts) as fd:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)


REMOVED_FILES = "removed-files.txt"
"""Scalebox's list of files the agent deletes after the attempt (a copy module that moves its source)."""
MAX_LIST_BYTES = 1 << 20


def remove_listed_files(work_dir: Path, view: ProgramView, name: str = REMOVED_FILES) -> list[str]:
    """Delete the regular files that the work directory's file `name` lists, one path per line, as the program
    saw them (call it after the attempt's files were measured). Returns the problems, one per path not removed.

    Only what the program could delete itself is deleted: a plain process's paths as they are; a container's
    only under the work directory or a volume the module mounts, and never through a link (a link listed is
    removed itself, what it points to is left)."""
    listed = read_one(work_dir, name, MAX_LIST_BYTES)
    if listed.data is None:
        return [listed.problem] if listed.problem else []
    problems = []
    for line in listed.data.decode(errors="replace").splitlines():
        path = line.strip()
        if path and (problem := _remove_one(view, path)) is not None:
            problems.append(problem)
    return problems


def _remove_one(view: ProgramView, name: str) -> str | None:
    """Remove one listed file; the problem, or None."""
    try:
        if view.host:
            target = os.path.join(view.work_dir, name)
            if stat.S_ISDIR(os.lstat(target).st_mode):
                return f"{shown(name)} is a directory: not removed"
            os.unlink(target)
            return None
        where = _beneath(view, name)
        if where is None or not where[1]:
            return f"{shown(name)} is outside the work directory and the module's volumes: not removed"
        root, parts = where
        with _parent_dir(root, parts) as fd:
            if stat.S_ISDIR(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
                return f"{shown(name)} is a directory: not removed"
            os.unlink(parts[-1], dir_fd=fd)
    except FileNotFoundError:
        return None  # gone already: what the list asks for
    except (OSError, ValueError) as exc:
        return f"{shown(name)} not removed: {getattr(exc, 'strerror', None) or exc}"
    return None
