"""Scalebox's broadcast headers, refused with a reason (pure).

In Scalebox, `slot_broadcast` and `host_broadcast` on `task add` make one task per slot, or per host, of the
module. Here agents take a module's tasks from one shared topic (any agent) or from one host's topic
(HOST-BOUND), and no registry lists a module's slots or hosts ahead of time, so a broadcast could not say which
copies it made; instead of sending one task that runs once, the task is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

BROADCAST_HEADERS = ("slot_broadcast", "host_broadcast")


def broadcast_problem(headers: Mapping[str, str]) -> str | None:
    """Why a task with these headers is refused (it asks for a broadcast), or None."""
    for name in BROADCAST_HEADERS:
        if name in headers:
            return (f"header {name!r} (one task per {name.split('_')[0]} of the module) is not supported: add one "
                    "task per host with `--to-host HOST` (`-h to_host=HOST`) to a HOST-BOUND module instead")
    return None
