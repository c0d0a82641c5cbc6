"""When an owner commits its open transaction (pure).

An owner answers each command as soon as it applied it: the reply is produced into the open transaction and read
by the caller before the commit (see `state/owner.py` for why that answer always stands). The commit then only
makes the changes durable (the changelog, the StateChanged events, the consumed offsets), so one transaction
may carry many batches: it is committed once it has been open for `interval_s` or holds `max_commands`
commands, as Kafka Streams commits every `commit.interval.ms`. A longer interval shares a commit's fixed cost
(a marker on each partition written) among more commands; a shorter one makes the changelog, the projection and
the semaphore gate's wake-ups fresher and leaves less to apply again after a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

COMMIT_INTERVAL_MS = 50
"""How long an owner's transaction stays open (default)."""
COMMIT_MAX_COMMANDS = 5000
"""At most this many commands per transaction (default)."""
IDLE_WAIT_S = 0.1
"""With no transaction open, how long the owner waits for a command at a time."""


@dataclass(frozen=True)
class CommitPolicy:
    """When to commit: after `interval_s` open, or at `max_commands` commands, whichever comes first."""

    interval_s: float = COMMIT_INTERVAL_MS / 1000
    max_commands: int = COMMIT_MAX_COMMANDS

    @classmethod
    def from_env(cls) -> CommitPolicy:
        """The defaults, or the interval `SCALEBOX_STATE_COMMIT_MS` gives (0: commit after every batch)."""
        text = os.environ.get("SCALEBOX_STATE_COMMIT_MS", "").strip()
        return cls(interval_s=max(0.0, float(text)) / 1000) if text else cls()

    def due(self, open_s: float, commands: int) -> bool:
        """Whether a transaction open for `open_s` with `commands` applied commands is to be committed now."""
        return commands > 0 and (open_s >= self.interval_s or commands >= self.max_commands)

    def wait_s(self, open_s: float | None) -> float:
        """How long the owner may wait for the next command: until the open transaction is due (None: none open)."""
        if open_s is None:
            return IDLE_WAIT_S
        return max(0.0, min(IDLE_WAIT_S, self.interval_s - open_s))
