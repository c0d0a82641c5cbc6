"""The restart policy of a run's children (agents, projector, state owner): restart one that ended unexpectedly,
after a backoff, unless it keeps ending or its exit code says a restart cannot help.

In the spirit of systemd's `Restart=on-failure` with `StartLimitBurst`/`StartLimitIntervalSec`:

| case | decision |
| --- | --- |
| an agent exits 0 | done: its app finished or it was idle past its limit |
| another child exits, 0 included | unexpected: a projector or state owner runs until stopped |
| exit code 2 | give up: a usage or configuration error (see `USAGE_ERROR`) |
| `limit` restarts within `window_s` | give up (`limit` 0: never restart, the old behaviour) |
| otherwise | restart after `min(max, initial * factor**(n-1))` s, n the restart's number in the window |

"Otherwise" is code 1 (an error, a service out of reach: it may pass) or a negative code (a signal, e.g. -9
from the OOM killer).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .retry import Backoff

USAGE_ERROR = 2
"""The CLI's exit code for a command refused as asked (`cli.common.fail`'s default, click's usage errors, an
`OperationError` with code 2): a bad app file, an unknown module, an app file whose SHA-256 is not the pinned
one. The same arguments fail the same way again, so a restart cannot fix it. Code 1 (an error
while running, a service out of reach: `launch.services.EXIT_UNREACHABLE`) may pass, and is restarted."""

RESTART_BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)
"""1 s, 2 s, 4 s ... up to 30 s."""


@dataclass(frozen=True)
class RestartPolicy:
    """At most `limit` restarts of one child within `window_s` seconds, each after `backoff`; never for an
    exit code in `fatal_codes`."""

    limit: int = 5
    window_s: float = 600.0
    backoff: Backoff = RESTART_BACKOFF
    fatal_codes: frozenset[int] = field(default_factory=lambda: frozenset({USAGE_ERROR}))

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_s <= 0:
            raise ValueError(f"bad restart policy {self}: need limit >= 0 and window_s > 0")


NEVER_RESTART = RestartPolicy(limit=0)


@dataclass(frozen=True)
class RestartDecision:
    """What to do about a child that ended: `done` (it finished), `restart` after `delay_s` (as restart number
    `number` within the window), or `give_up`; `reason` says why."""

    action: Literal["done", "restart", "give_up"]
    reason: str
    delay_s: float = 0.0
    number: int = 0


def recent_restarts(restarts: Sequence[float], now_s: float, window_s: float) -> list[float]:
    """The restart times (seconds, any monotonic clock) that lie within the window ending at `now_s`."""
    return [t for t in restarts if now_s - t < window_s]


def describe_exit(code: int) -> str:
    """`code 1`, or `code -9 (signal SIGKILL)` for a child a signal ended (Popen's negative return codes)."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"code {code} (signal {signal.Signals(-code).name})"
    except ValueError:
        return f"code {code} (signal {-code})"


def describe_window(window_s: float) -> str:
    """`10 min`, `90 s`, `2 h`: the window the way the console line says it."""
    if window_s >= 3600 and window_s % 3600 == 0:
        return f"{window_s / 3600:g} h"
    if window_s >= 60 and window_s % 60 == 0:
        return f"{window_s / 60:g} min"
    return f"{window_s:g} s"


def decide_restart(policy: RestartPolicy, exit_code: int, stops_by_itself: bool, restarts: Sequence[float],
                   now_s: float) -> RestartDecision:
    """Decide about a child that ended with `exit_code` at `now_s`, after it was restarted at `restarts` (times
    on the same clock). `stops_by_itself`: the child's code 0 means it finished (an agent), not a failure."""
    if exit_code == 0 and stops_by_itself:
        return RestartDecision("done", "it stopped by itself")
    if policy.limit == 0:
        return RestartDecision("give_up", "restarts are off")
    if exit_code in policy.fatal_codes:
        return RestartDecision("give_up", f"exit code {exit_code} means a usage or configuration error, which a "
                                          "restart cannot fix")
    recent = len(recent_restarts(restarts, now_s, policy.window_s))
    window = describe_window(policy.window_s)
    if recent >= policy.limit:
        return RestartDecision("give_up", f"restarted {recent} time(s) in {window} already, the limit")
    number = recent + 1
    return RestartDecision("restart", f"restart {number} of {policy.limit} in {window}",
                           policy.backoff.delay(number, 0.5), number)  # (0.5: the middle of any jitter)
