"""When an owner commits what it applied (pure).

An owner answers each command as soon as it applied it: the reply goes out at once, in no transaction, and the
caller reads it before the commit (see `state/owner.py` for why that answer always stands). The commit then only
makes the changes durable (the changelog, the StateChanged events, the consumed offsets), so one transaction
may carry many batches: what was applied is committed once the first of it has waited `interval_s` or it
holds `max_commands` commands, as Kafka Streams commits every `commit.interval.ms`. A longer interval shares a
commit's fixed cost (a marker on each partition written) among more commands; a shorter one makes the
changelog, the projection and the semaphore gate's wake-ups fresher and leaves less to apply again after a
crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

COMMIT_INTERVAL_MS = 50
"""How long an owner's applied commands wait for their commit (default)."""
COMMIT_MAX_COMMANDS = 5000
"""At most this many commands per transaction (default)."""
IDLE_WAIT_S = 0.1
"""With nothing to commit, how long the owner waits for a command at a time."""


@dataclass(frozen=True)
class CommitPolicy:
    """When to commit: `interval_s` after the first command applied since the last commit, or at `max_commands`
    commands, whichever comes first."""

    interval_s: float = COMMIT_INTERVAL_MS / 1000
    max_commands: int = COMMIT_MAX_COMMANDS

    @classmethod
    def from_env(cls) -> CommitPolicy:
        """The defaults, or the interval `SCALEBOX_STATE_COMMIT_MS` gives (0: commit after every batch)."""
        text = os.environ.get("SCALEBOX_STATE_COMMIT_MS", "").strip()
        return cls(interval_s=max(0.0, float(text)) / 1000) if text else cls()

    def due(self, open_s: float, commands: int) -> bool:
        """Whether `commands` applied commands, the first `open_s` ago, are to be committed now."""
        return commands > 0 and (open_s >= self.interval_s or commands >= self.max_commands)

    def wait_s(self, open_s: float | None) -> float:
        """How long the owner may wait for the next command: until what it applied is due (None: nothing is)."""
        if open_s is None:
            return IDLE_WAIT_S
        return max(0.0, min(IDLE_WAIT_S, self.interval_s - open_s))
