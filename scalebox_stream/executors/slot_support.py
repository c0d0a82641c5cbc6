"""Pure helpers of the slot-container executor: names, labels, environments, the slot work dir."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import shutil
import socket
import stat
from pathlib import Path

from scalebox_stream.executors.base import ExecRequest
from scalebox_stream.executors.docker_common import CONTAINER_WORK_DIR, MANAGED_LABEL

SLOT_LABEL = "scalebox.slot"
PER_TASK_LABELS = frozenset({"scalebox.task_id", "scalebox.attempt"})
PER_TASK_ENV = frozenset({"TASK_ID", "ATTEMPT", "FROM_MODULE"})
SLOT_DIRS = ".slots"
"""Slot work dirs live in `<parent of the attempt work dirs>/.slots/<container name>`."""
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
_PART_MAX = 63
OCI_EXEC_FAILED = b"OCI runtime exec failed"


def _part(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_.-")[:_PART_MAX]


def slot_container_name(request: ExecRequest, fallback_agent: str) -> str:
    """`sbx-slot-<app>-<module>-<agent suffix>-<slot>`, from the request's labels.

    The agent suffix is the last part of the `scalebox.agent` label (its random token), else
    `fallback_agent` (one per executor), so two agents on a host never share a container.
    """
    labels = request.labels
    agent = labels.get("scalebox.agent", "").rsplit("-", 1)[-1] or fallback_agent
    parts = [labels.get("scalebox.app", ""), labels.get("scalebox.module", ""), agent, str(request.slot)]
    return "sbx-slot-" + "-".join(p for p in (_part(x) for x in parts) if p)


def agent_is_gone(agent_id: str) -> bool:
    """True for an agent id (`<hostname>-<pid>-<token>`) of this host whose process no longer exists."""
    parts = agent_id.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def slot_labels(request: ExecRequest) -> dict[str, str]:
    """The request's labels minus the per-task ones, plus managed and slot."""
    kept = {k: v for k, v in request.labels.items() if k not in PER_TASK_LABELS}
    return {**kept, MANAGED_LABEL: "true", SLOT_LABEL: str(request.slot)}


def slot_env(request: ExecRequest) -> dict[str, str]:
    """The environment of setup.sh and teardown.sh: the task's without its per-task variables."""
    env = {k: v for k, v in request.env.items() if k not in PER_TASK_ENV}
    env["WORK_DIR"] = CONTAINER_WORK_DIR
    return env


def action_from_env(name: str, *envs: dict[str, str]) -> list[str] | None:
    """`ACTION_SETUP` / `ACTION_TEARDOWN` (Scalebox's override) as an argv, from the first env that
    sets it; None when none does. Split like a shell would, never run by one."""
    for env in envs:
        value = env.get(name, "").strip()
        if value:
            return shlex.split(value)
    return None


def env_list_to_dict(items: list[str] | None) -> dict[str, str]:
    """Docker's `KEY=value` list (a container's Config.Env) as a dict."""
    return dict(item.split("=", 1) for item in items or [] if "=" in item)


def slot_work_dir(request: ExecRequest, container_name: str) -> Path:
    """The host dir mounted at /work in a slot container: next to the attempt work dirs."""
    return Path(request.work_dir).resolve().parent / SLOT_DIRS / container_name


def empty_dir(path: Path, names: set[str] | None = None) -> None:
    """Removes everything inside `path` (creating it if missing). An empty directory costs one listing: a
    slot's work directory is emptied before and after every task. `names`: what a listing made since the
    directory last changed found in it (then it is not listed again)."""
    if names is not None:
        for name in names:
            _remove(os.path.join(path, name))
        return
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def move_contents(src: Path, dst: Path) -> None:
    """Moves every entry of `src` into `dst` (a rename on one filesystem), leaving `src` empty.

    Across filesystems what a program left is copied without ever opening anything but a regular file: a
    link is copied as a link, and a FIFO or device node is left behind (opening one could block or act on a
    host device)."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        entries = list(os.scandir(src))
    except FileNotFoundError:
        return
    for entry in entries:
        target = dst / entry.name
        try:
            os.rename(entry.path, target)
        except OSError as e:
            if e.errno == errno.EXDEV:
                _copy_across(entry.path, target)
            elif e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                _remove(target)
                os.rename(entry.path, target)
            elif e.errno != errno.ENOENT:
                raise


def _copy_regular(src: str, dst: str) -> None:
    """shutil's copy function, for regular files only (others are skipped, never opened)."""
    if stat.S_ISREG(os.lstat(src).st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)


def _copy_across(src: str, dst: Path) -> None:
    """Copy `src` (a file, link or tree) to `dst` on another filesystem, then remove it."""
    mode = os.lstat(src).st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(mode):
        shutil.copytree(src, dst, symlinks=True, copy_function=_copy_regular)
    else:
        _copy_regular(src, str(dst))
    _remove(src)


def _remove(path: str | Path) -> None:
    """Removes a file, link or directory tree; nothing if it is gone (one unlink for a file: no stat first)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):  # unlink(2) of a directory: EISDIR on Linux, EPERM by POSIX
        shutil.rmtree(path, ignore_errors=True)


def exec_failure(code: int, stdout: bytes) -> tuple[int, str] | None:
    """Docker's "OCI runtime exec failed" (program missing or not executable) as (127 or 126, message)."""
    if code != 126 or not stdout.startswith(OCI_EXEC_FAILED):
        return None
    message = stdout.decode(errors="replace").strip()
    lowered = message.lower()
    missing = "no such file or directory" in lowered or "not found" in lowered
    return (127 if missing else 126), message
