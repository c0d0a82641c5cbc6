"""The local services home directory (``$SCALEBOX_HOME``), its JSON state file and process helpers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalebox_stream.config import CliSettings

STATE_FILE = "local.json"


class LocalServiceError(RuntimeError):
    """A local service could not be started, reached or stopped."""


class MissingPrerequisite(LocalServiceError):
    """A program the local services need (java, mvn) is missing or too old; the message says what to do."""


def scalebox_home() -> Path:
    """Return the settings' home (``$SCALEBOX_HOME``, default ``~/.scalebox``), created if missing."""
    home = CliSettings.load().home
    home.mkdir(parents=True, exist_ok=True)
    return home


def state_path() -> Path:
    """Path of the JSON state file (``local.json``)."""
    return scalebox_home() / STATE_FILE


def load_state() -> dict[str, Any]:
    """Read the state file; an absent or unreadable file is an empty state."""
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(state: dict[str, Any]) -> None:
    """Write the state file atomically."""
    path = state_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def update_state(section: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """Replace (or with ``None`` remove) one section, e.g. ``"kafka"``, of the state file."""
    state = load_state()
    if values is None:
        state.pop(section, None)
    else:
        state[section] = values
    save_state(state)
    return state


@contextlib.contextmanager
def home_lock() -> Iterator[None]:
    """Serialise ``up``/``down`` across processes with an flock on ``$SCALEBOX_HOME/.lock``."""
    with open(scalebox_home() / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line contains ``marker``.

    The marker guards against a stale pid that the OS has since reused for another program.
    """
    if not pid:
        return False
    reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # not Linux: trust kill(0)
        return True
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker is not None:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return marker in cmdline
    except (OSError, IndexError):
        return False
    return True


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (Linux ``/proc``), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
